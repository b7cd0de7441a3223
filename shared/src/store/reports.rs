//! The port of delivery reports ([`crate::report`]) in the store: part of [`super::Store`].

use std::future::Future;

use super::StoreError;
use crate::domain::{EpochSeconds, EventId};
use crate::report::{DeliveryReport, Finished, ItemKey, ItemOutcome, ReportStart};

/// Delivery reports in the store: opened by the root, items registered and finished once each,
/// read by event id. Part of [`crate::store::Store`].
pub trait Reports: Send + Sync {
    /// Opens the report of event `id` (or, when an earlier attempt opened it, leaves it as it
    /// is) and registers the root item: one outstanding item until the root finishes. Kept
    /// until `expires_at` (the event claim's TTL).
    fn open_report(
        &self,
        id: &EventId,
        start: &ReportStart,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Registers items that were sent (each once, whoever registers it again): each adds one
    /// outstanding item, unless it has finished already.
    fn register_items(
        &self,
        id: &EventId,
        keys: &[ItemKey],
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds item `key`'s counts to the report, once: a second finish of the same item adds
    /// its deliveries as duplicates instead. A registered item stops being outstanding.
    fn finish_item(
        &self,
        id: &EventId,
        key: &ItemKey,
        outcome: &ItemOutcome,
        expires_at: EpochSeconds,
    ) -> impl Future<Output = Result<Finished, StoreError>> + Send;

    /// The report of event `id`, if one is kept (live at `now`); its first and last post times
    /// are gathered from its items while it runs.
    fn delivery_report(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Option<DeliveryReport>, StoreError>> + Send;

    /// Takes the publication of a report whose every item finished: the report (with its
    /// first and last post times) once, to the caller that is to send `FanoutCompleted`;
    /// `None` when items are outstanding or it was taken already.
    fn claim_publication(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Option<DeliveryReport>, StoreError>> + Send;

    /// Gives a publication back (sending `FanoutCompleted` failed), so that a retry takes it.
    fn release_publication(
        &self,
        id: &EventId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

//! The lease `deliver` holds on its work item: a crash costs seconds, not the queue's
//! visibility timeout.
//!
//! The work queue's visibility timeout is 6 × `deliver`'s timeout (6 minutes), as AWS advises
//! for a queue that triggers Lambda. An invocation that dies (killed, timed out, out of
//! memory) would leave its page of fans hidden that long. So `deliver` first hides its item
//! for only [`LEASE`] and renews that every `RENEW_EVERY` while it works ([`hold`]): once the
//! invocation is gone, nothing renews, and the item is received again within [`LEASE`].
//!
//! A renewal that fails is logged and the work goes on: if the lease then lapses, the item is
//! received again while this invocation still works on it, and its fans may get the
//! notification twice. Delivery is at least once; clients drop duplicates by `id`.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use super::Inbox;

/// How long a work item stays hidden past `deliver`'s last renewal: a crashed item is
/// received again within this (plus the event source's poll).
pub const LEASE: Duration = Duration::from_secs(10);

/// How often a lease is renewed: a third of it, so two renewals in a row can fail or be slow
/// before the lease lapses.
pub const RENEWALS_PER_LEASE: u32 = 3;

// A crash must cost about 20 s at most; two renewals can be lost before the lease lapses; and
// renewals stay a second or more apart (SQS takes whole seconds).
const _: () = assert!(LEASE.as_secs() <= 20);
const _: () = assert!(RENEWALS_PER_LEASE >= 3);
const _: () = assert!(LEASE.as_secs() / RENEWALS_PER_LEASE as u64 >= 1);

/// The longest a failed item waits before its next receive ([`retry_after`]).
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// SQS's longest visibility timeout: 12 hours.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// `hidden` as SQS takes it: whole seconds, rounded up, at most 12 hours.
#[must_use]
pub fn whole_seconds(hidden: Duration) -> Duration {
    let seconds = hidden
        .as_secs()
        .saturating_add(u64::from(hidden.subsec_nanos() > 0));
    Duration::from_secs(seconds).min(MAX_VISIBILITY)
}

/// How long an item that `deliver` reports as failed on its `receive_count`th receive stays
/// hidden: `lease`, doubling with each receive, at most [`RETRY_AFTER_MAX`]. Without it the
/// item would come back at the end of its lease, and the queue's five receives would
/// dead-letter it within a minute of an outage (the store failing, say); with [`LEASE`] they
/// span about five minutes (10 + 20 + 40 + 80 + 160 s).
#[must_use]
pub fn retry_after(lease: Duration, receive_count: u32) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    lease.saturating_mul(1 << doublings).min(RETRY_AFTER_MAX)
}

/// Hides the message of `receipt` for `hidden`; a failure is logged (naming `message_id`),
/// not returned: the message then keeps the visibility it had.
pub async fn hide<I: Inbox>(inbox: &I, message_id: &str, receipt: &str, hidden: Duration) {
    if let Err(err) = inbox.hide_for(receipt, hidden).await {
        tracing::warn!(
            message_id,
            hidden_s = hidden.as_secs(),
            error = &err as &dyn std::error::Error,
            "work item visibility not changed; a lapsed lease may deliver it twice"
        );
    }
}

/// Runs `work` with the message of `receipt` leased: hidden for `lease` now, and again
/// [`RENEWALS_PER_LEASE`] times per `lease` until `work` ends. Dropping the future (a crash)
/// stops the renewals with the work, so the message comes back within `lease`.
pub async fn hold<I: Inbox, F: Future>(
    inbox: &I,
    message_id: &str,
    receipt: &str,
    lease: Duration,
    work: F,
) -> F::Output {
    hide(inbox, message_id, receipt, lease).await;
    let every = (lease / RENEWALS_PER_LEASE).max(Duration::from_millis(100));
    tokio::select! {
        biased;
        out = work => out,
        never = renew(inbox, message_id, receipt, lease, every) => match never {},
    }
}

async fn renew<I: Inbox>(
    inbox: &I,
    message_id: &str,
    receipt: &str,
    lease: Duration,
    every: Duration,
) -> Infallible {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        hide(inbox, message_id, receipt, lease).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sqs_takes_whole_seconds_rounded_up_within_twelve_hours() {
        assert_eq!(whole_seconds(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            whole_seconds(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            whole_seconds(Duration::from_millis(2500)),
            Duration::from_secs(3)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
        assert_eq!(whole_seconds(Duration::MAX), MAX_VISIBILITY);
    }

    #[test]
    fn a_failed_item_waits_longer_at_each_receive_up_to_five_minutes() {
        let waits: Vec<u64> = (0..=7).map(|n| retry_after(LEASE, n).as_secs()).collect();
        assert_eq!(waits, [10, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_after(LEASE, u32::MAX), RETRY_AFTER_MAX);
    }
}

//! Processed events on the table: the claim (`EVENT#<id>`/`EVENT`) and the hand-off records
//! (`EVENT#<id>`/`HANDOFF#...`). The DynamoDB side of [`EventStore`].

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{DynamoStore, Item, corrupt, n, s, str_attr, unless_condition_failed};
use crate::domain::{ConnectionId, EpochSeconds, EventId};
use crate::schema::{
    self, EVENT_DONE, EVENT_LEASE_UNTIL, EVENT_PENDING, EVENT_SK, EVENT_STATE, EXPIRES_AT,
    HAND_OFF_NEXT, HAND_OFF_SENT, PK, SK, event_pk,
};
use crate::store::{Claim, EventStore, HandOff, Span, StoreError};

impl EventStore for DynamoStore {
    async fn claim_event(
        &self,
        id: &EventId,
        now: EpochSeconds,
        lease_until: EpochSeconds,
        expires_at: EpochSeconds,
    ) -> Result<Claim, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(event_pk(id)))
            .item(SK, s(EVENT_SK))
            .item(EVENT_STATE, s(EVENT_PENDING))
            .item(EVENT_LEASE_UNTIL, n(lease_until))
            .item(EXPIRES_AT, n(expires_at))
            // Free: no claim, one whose TTL has passed (not yet deleted by DynamoDB), or a
            // pending one whose holder's lease ran out (it crashed or timed out).
            .condition_expression(
                "attribute_not_exists(#pk) OR #e <= :now OR (#state = :pending AND #lease <= :now)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#state", EVENT_STATE)
            .expression_attribute_names("#lease", EVENT_LEASE_UNTIL)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":pending", s(EVENT_PENDING))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::New),
            Err(SdkError::ServiceError(e)) => match e.err() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    // A claim written before claims had states counts as done.
                    let pending = failed.item().is_some_and(|old| {
                        matches!(old.get(EVENT_STATE), Some(AttributeValue::S(v)) if v == EVENT_PENDING)
                    });
                    Ok(if pending { Claim::Running } else { Claim::Done })
                }
                _ => Err(StoreError::backend("PutItem", SdkError::ServiceError(e))),
            },
            Err(e) => Err(StoreError::backend("PutItem", e)),
        }
    }

    async fn finish_event(&self, id: &EventId, expires_at: EpochSeconds) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(event_pk(id)))
            .key(SK, s(EVENT_SK))
            .update_expression("SET #state = :done, #e = :expires REMOVE #lease")
            .expression_attribute_names("#state", EVENT_STATE)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#lease", EVENT_LEASE_UNTIL)
            .expression_attribute_values(":done", s(EVENT_DONE))
            .expression_attribute_values(":expires", n(expires_at))
            .send()
            .await
            .map_err(|e| StoreError::backend("UpdateItem", e))?;
        Ok(())
    }

    async fn hand_off(&self, id: &EventId, span: &Span) -> Result<Option<HandOff>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(event_pk(id)))
            .key(SK, s(schema::hand_off_sk(span)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::backend("GetItem", e))?;
        match out.item {
            Some(item) if !item.is_empty() => hand_off_of(&item).map(Some),
            _ => Ok(None),
        }
    }

    async fn pin_hand_off(
        &self,
        id: &EventId,
        span: &Span,
        next: &ConnectionId,
        expires_at: EpochSeconds,
    ) -> Result<HandOff, StoreError> {
        // The first attempt's `next` stays: a later one only reads it back.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(event_pk(id)))
            .key(SK, s(schema::hand_off_sk(span)))
            .update_expression(
                "SET #next = if_not_exists(#next, :next), #sent = if_not_exists(#sent, :no), \
                 #e = if_not_exists(#e, :expires)",
            )
            .expression_attribute_names("#next", HAND_OFF_NEXT)
            .expression_attribute_names("#sent", HAND_OFF_SENT)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":next", s(next.as_str()))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":expires", n(expires_at))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| StoreError::backend("UpdateItem", e))?;
        hand_off_of(&out.attributes.unwrap_or_default())
    }

    async fn hand_off_sent(&self, id: &EventId, span: &Span) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(event_pk(id)))
            .key(SK, s(schema::hand_off_sk(span)))
            .update_expression("SET #sent = :yes")
            .expression_attribute_names("#sent", HAND_OFF_SENT)
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| StoreError::backend("UpdateItem", e))?;
        Ok(())
    }

    async fn release_event(&self, id: &EventId) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(event_pk(id)))
            .key(SK, s(EVENT_SK))
            .condition_expression("#state = :pending")
            .expression_attribute_names("#state", EVENT_STATE)
            .expression_attribute_values(":pending", s(EVENT_PENDING))
            .send()
            .await;
        // Done (or gone): nothing to give back.
        unless_condition_failed(result, "DeleteItem").map(|_| ())
    }
}

/// A list of artist keys (`scope`, `publish`); `None` when the attribute is absent.
/// A hand-off record (`EVENT#<id>`/`HANDOFF#...`): where the rest starts, and whether it was
/// sent. A record of the older shape (no `next`, written once the continuation was sent)
/// says sent, but not where.
fn hand_off_of(item: &Item) -> Result<HandOff, StoreError> {
    let next = match item.get(HAND_OFF_NEXT) {
        None => None,
        Some(_) => {
            let raw = str_attr(item, HAND_OFF_NEXT)?;
            Some(ConnectionId::parse(raw).map_err(|_| corrupt(item, "bad hand-off next"))?)
        }
    };
    let sent =
        next.is_none() || matches!(item.get(HAND_OFF_SENT), Some(AttributeValue::Bool(true)));
    Ok(HandOff { next, sent })
}

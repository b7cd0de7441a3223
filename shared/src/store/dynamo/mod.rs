//! The DynamoDB adapter of [`Store`](crate::store::Store): one table, laid out as
//! [`crate::schema`] says. One file per port: `connections` ([`ConnectionStore`]), with
//! `users` for each user's list and revocations; `rooms` ([`RoomStore`]); `events`
//! ([`EventStore`]); `history` ([`HistoryStore`]); `reports` ([`Reports`]); and `inspect`, the
//! operator's reads. This file holds the client, the table's creation and the attribute
//! helpers they share.
//!
//! [`ConnectionStore`]: crate::store::ConnectionStore
//! [`RoomStore`]: crate::store::RoomStore
//! [`EventStore`]: crate::store::EventStore
//! [`HistoryStore`]: crate::store::HistoryStore
//! [`Reports`]: crate::store::Reports

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem,
};

use super::{Applied, StoreError};
use crate::domain::ConnectionId;
use crate::schema::{self, PK, SK, TABLE, connection_pk};

mod connections;
mod events;
mod history;
mod inspect;
mod reports;
mod rooms;
mod users;

type Item = HashMap<String, AttributeValue>;

/// TransactWriteItems takes at most 100 items.
const TRANSACT_MAX: usize = 100;
/// Rounds of deleting a connection's subscriptions while other deletes race it.
const UNPROCESSED_RETRIES: u32 = 6;

/// [`Store`](crate::store::Store) on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// An adapter for `table` through `client`.
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The DynamoDB client (the budget's items live in the same table).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn query_connection_items(&self, id: &ConnectionId) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(connection_pk(id)))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| StoreError::backend("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Applied, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(Applied::Yes),
            Err(err) if is_lost_race(&err) => Ok(Applied::Conflict),
            Err(err) => Err(StoreError::backend("TransactWriteItems", err)),
        }
    }

    /// Creates the table (on demand, with the artist index) and enables TTL, as
    /// [`schema::TABLE`] defines it. For DynamoDB Local and tests; AWS gets it from
    /// `template.yaml`.
    ///
    /// # Errors
    /// The SDK error, for example when the table exists.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let key_schema = |parts: &[schema::KeyPart; 2]| {
            parts
                .iter()
                .map(|p| {
                    KeySchemaElement::builder()
                        .attribute_name(p.attribute)
                        .key_type(if p.hash {
                            KeyType::Hash
                        } else {
                            KeyType::Range
                        })
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let build = |e| StoreError::backend("CreateTable", e);
        let mut request = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&TABLE.key).map_err(build)?));
        for attribute in TABLE.string_attributes {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            );
        }
        for attribute in TABLE.number_attributes {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(*attribute)
                    .attribute_type(ScalarAttributeType::N)
                    .build()
                    .map_err(build)?,
            );
        }
        for index in TABLE.indexes {
            let projection = Projection::builder()
                .projection_type(ProjectionType::Include)
                .set_non_key_attributes(Some(
                    index.include.iter().map(|a| (*a).to_owned()).collect(),
                ))
                .build();
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(key_schema(&index.key).map_err(build)?))
                    .projection(projection)
                    .build()
                    .map_err(build)?,
            );
        }
        request
            .send()
            .await
            .map_err(|e| StoreError::backend("CreateTable", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TABLE.ttl_attribute)
                    .enabled(true)
                    .build()
                    .map_err(|e| StoreError::backend("UpdateTimeToLive", e))?,
            )
            .send()
            .await
            .map_err(|e| StoreError::backend("UpdateTimeToLive", e))?;
        Ok(())
    }

    /// Whether the table exists.
    ///
    /// # Errors
    /// The SDK error for anything but "not found".
    pub async fn table_exists(&self) -> Result<bool, StoreError> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(StoreError::backend("DescribeTable", err)),
        }
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// What a conditional write returned, `None` when its condition failed (nothing was written);
/// any other failure is an error of `operation`.
fn unless_condition_failed<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    operation: &'static str,
) -> Result<Option<T>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(err) if err.code() == Some("ConditionalCheckFailedException") => Ok(None),
        Err(err) => Err(StoreError::backend(operation, err)),
    }
}

fn n(value: impl Into<i64>) -> AttributeValue {
    AttributeValue::N(value.into().to_string())
}

fn str_attr<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(corrupt(item, &format!("{name} is not a string"))),
    }
}

fn num_attr(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| corrupt(item, &format!("{name} is not an integer"))),
        _ => Err(corrupt(item, &format!("{name} is not a number"))),
    }
}

fn corrupt(item: &Item, reason: &str) -> StoreError {
    let key = |name| match item.get(name) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    StoreError::Corrupt {
        pk: key(PK),
        sk: key(SK),
        reason: reason.to_owned(),
    }
}

/// A transaction cancelled only because a condition failed or another transaction won.
fn is_lost_race(err: &SdkError<TransactWriteItemsError>) -> bool {
    let Some(TransactWriteItemsError::TransactionCanceledException(e)) = err.as_service_error()
    else {
        return false;
    };
    e.cancellation_reasons().iter().all(|reason| {
        matches!(
            reason.code(),
            None | Some("None" | "ConditionalCheckFailed" | "TransactionConflict")
        )
    })
}

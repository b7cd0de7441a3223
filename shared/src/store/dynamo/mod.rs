//! The DynamoDB adapter of [`Store`]: one table, laid out as [`crate::schema`] says.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};

use super::{
    Admission, Admitted, Applied, Audience, Bucket, Claim, ConnectionState, HandOff, History,
    LAPSED_WINDOW_SECONDS, NewEntry, RateLimit, Removed, Retention, Span, Spend, Store, StoreError,
    SubscriberPage,
};
use crate::domain::{
    Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, EventId, Scope, Shard, UserId,
    now_epoch_seconds,
};
use crate::schema::{
    self, BY_ARTIST_INDEX, EVENT_DONE, EVENT_LEASE_UNTIL, EVENT_PENDING, EVENT_SK, EVENT_STATE,
    EXPIRES_AT, GSI1PK, HAND_OFF_NEXT, HAND_OFF_SENT, META, PK, REPLAYED, SK, TABLE,
    artist_shard_pk, connection_pk, event_pk, subscription_sk,
};

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

/// [`Store`] on a DynamoDB table.
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

impl Store for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut item = Item::from([
            (PK.to_owned(), s(connection_pk(&connection.id))),
            (SK.to_owned(), s(META)),
            (
                GSI1PK.to_owned(),
                s(schema::live_shard_pk(Shard::of(&connection.id))),
            ),
            ("user_id".to_owned(), s(connection.user_id.as_str())),
            ("connected_at".to_owned(), n(connection.connected_at)),
            (EXPIRES_AT.to_owned(), n(connection.expires_at)),
            ("version".to_owned(), n(0)),
        ]);
        let list =
            |keys: &[ArtistKey]| AttributeValue::L(keys.iter().map(|k| s(k.as_str())).collect());
        if let Scope::Only(keys) = &connection.scope {
            item.insert("scope".to_owned(), list(keys));
        }
        if !connection.publish.is_empty() {
            item.insert("publish".to_owned(), list(&connection.publish));
        }
        // Counted once: a record written again under the same id (never, in practice) is
        // put again without the condition, and not counted twice.
        let first = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match first {
            Ok(_) => {
                inspect::count(self, Shard::of(&connection.id), 1, 0).await;
                return Ok(());
            }
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) => {}
            Err(e) => return Err(StoreError::backend("PutItem", e)),
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| StoreError::backend("PutItem", e))?;
        Ok(())
    }

    async fn connection_state(
        &self,
        id: &ConnectionId,
        now: EpochSeconds,
    ) -> Result<Option<ConnectionState>, StoreError> {
        let items = self.query_connection_items(id).await?;
        let mut meta = None;
        let mut subscriptions = Vec::new();
        let mut replayed = BTreeMap::new();
        for item in &items {
            let sk = str_attr(item, SK)?;
            if sk == META {
                meta = Some(item);
            } else if let Some(key) = schema::artist_key_from_sk(sk)
                && num_attr(item, EXPIRES_AT)? > now
            {
                if item.contains_key(REPLAYED) {
                    let through = u64::try_from(num_attr(item, REPLAYED)?)
                        .map_err(|_| corrupt(item, "replayed is negative"))?;
                    replayed.insert(key.clone(), through);
                }
                subscriptions.push(key);
            }
        }
        let Some(meta) = meta else { return Ok(None) };
        let (connection, version) = connection_from_item(id, meta)?;
        if !connection.is_live(now) {
            return Ok(None);
        }
        subscriptions.sort();
        Ok(Some(ConnectionState {
            connection,
            subscriptions,
            version,
            replayed,
        }))
    }

    async fn presence_told(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        notice: crate::store::Notice,
        pacing: crate::store::Pacing,
        now_ms: i64,
    ) -> Result<crate::store::Told, StoreError> {
        rooms::presence_told(self, (artist, user), notice, pacing, now_ms).await
    }

    async fn settle_presence(
        &self,
        artist: &ArtistKey,
        user: &UserId,
        state: crate::store::Notice,
        armed_ms: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        rooms::settle_presence(self, (artist, user), (state, armed_ms), now_ms).await
    }

    async fn mark_replayed(
        &self,
        id: &ConnectionId,
        artist: &ArtistKey,
        through: u64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(connection_pk(id)))
            .key(SK, s(subscription_sk(artist)))
            .update_expression("SET #r = :through")
            // Only on a subscription that exists (an update would create the item), and only
            // upwards: two catch-ups of one connection may finish in either order.
            .condition_expression(
                "attribute_exists(#pk) AND (attribute_not_exists(#r) OR #r < :through)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#r", REPLAYED)
            .expression_attribute_values(":through", AttributeValue::N(through.to_string()))
            .send()
            .await;
        unless_condition_failed(result, "UpdateItem").map(|_| ())
    }

    async fn add_subscriptions(
        &self,
        connection: &Connection,
        version: u32,
        artists: &[Artist],
    ) -> Result<Applied, StoreError> {
        let pk = connection_pk(&connection.id);
        let shard = Shard::of(&connection.id);
        let mut items = vec![bump_version(&self.table, &pk, version)?];
        for artist in artists {
            let put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(&pk))
                .item(SK, s(subscription_sk(artist.key())))
                .item(GSI1PK, s(artist_shard_pk(artist.key(), shard)))
                .item("artist", s(artist.name()))
                .item(EXPIRES_AT, n(connection.expires_at))
                // The route adds only what the connection does not hold.
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
            items.push(TransactWriteItem::builder().put(put).build());
            items.push(rooms::count_update(
                &self.table,
                artist.key(),
                Some(artist.name()),
                shard,
                1,
                now_epoch_seconds(),
            )?);
        }
        let applied = self.transact(items).await?;
        if applied == Applied::Yes {
            let added = i64::try_from(artists.len()).unwrap_or(i64::MAX);
            inspect::count(self, shard, 0, added).await;
        }
        Ok(applied)
    }

    async fn remove_subscriptions(
        &self,
        id: &ConnectionId,
        version: u32,
        keys: &[ArtistKey],
    ) -> Result<Applied, StoreError> {
        let pk = connection_pk(id);
        let mut items = vec![bump_version(&self.table, &pk, version)?];
        for key in keys {
            let delete = Delete::builder()
                .table_name(&self.table)
                .key(PK, s(&pk))
                .key(SK, s(subscription_sk(key)))
                // The route removes only what the connection holds.
                .condition_expression("attribute_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build()
                .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
            items.push(TransactWriteItem::builder().delete(delete).build());
            items.push(rooms::count_update(
                &self.table,
                key,
                None,
                Shard::of(id),
                -1,
                now_epoch_seconds(),
            )?);
        }
        let applied = self.transact(items).await?;
        if applied == Applied::Yes {
            let removed = i64::try_from(keys.len()).unwrap_or(i64::MAX);
            inspect::count(self, Shard::of(id), 0, -removed).await;
        }
        Ok(applied)
    }

    async fn delete_connection(&self, id: &ConnectionId) -> Result<Removed, StoreError> {
        // The connection record goes first. Every subscription write is a transaction
        // conditioned on that record's revision, so from then on none can commit, and the
        // queries after it see every subscription there will ever be: a subscribe racing the
        // disconnect leaves no orphan behind (it fails, and its client is gone anyway).
        let mut removed = Removed::default();
        // On condition that it is there: of deletes racing (`$disconnect` beside a 410
        // cleanup or an operator's disconnect), exactly one gets the record, and counts it out.
        let meta = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(connection_pk(id)))
            .key(SK, s(META))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        let old = match meta {
            Ok(out) => out.attributes.filter(|old| !old.is_empty()),
            Err(SdkError::ServiceError(e))
                if matches!(
                    e.err(),
                    aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                None
            }
            Err(e) => return Err(StoreError::backend("DeleteItem", e)),
        };
        if let Some(old) = old {
            removed.items += 1;
            inspect::count(self, Shard::of(id), -1, 0).await;
            removed.user = str_attr(&old, "user_id")
                .ok()
                .and_then(|user| UserId::parse(user).ok());
        }
        if let Some(user) = &removed.user {
            users::release(self, user, id).await?;
        }
        // Each subscription goes with its count, once: a delete racing this one (a 410
        // cleanup beside `$disconnect`) makes the transaction fail, and what is left is read
        // again.
        for _ in 0..=UNPROCESSED_RETRIES {
            let subscriptions: Vec<Item> = self
                .query_connection_items(id)
                .await?
                .into_iter()
                .filter(|item| str_attr(item, SK).is_ok_and(|sk| sk != META))
                .collect();
            if subscriptions.is_empty() {
                return Ok(removed);
            }
            let mut lost = false;
            for chunk in subscriptions.chunks(TRANSACT_MAX / 2) {
                let mut items = Vec::with_capacity(chunk.len() * 2);
                let mut artists = Vec::with_capacity(chunk.len());
                for item in chunk {
                    let sk = str_attr(item, SK)?;
                    let key = schema::artist_key_from_sk(sk)
                        .ok_or_else(|| corrupt(item, "not a subscription"))?;
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .key(PK, s(connection_pk(id)))
                        .key(SK, s(sk))
                        .condition_expression("attribute_exists(#pk)")
                        .expression_attribute_names("#pk", PK)
                        .build()
                        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
                    items.push(TransactWriteItem::builder().delete(delete).build());
                    items.push(rooms::count_update(
                        &self.table,
                        &key,
                        None,
                        Shard::of(id),
                        -1,
                        now_epoch_seconds(),
                    )?);
                    let name = str_attr(item, "artist").unwrap_or(key.as_str());
                    if let Ok(artist) = Artist::parse(name) {
                        artists.push(artist);
                    }
                }
                if self.transact(items).await? == Applied::Yes {
                    let gone = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
                    inspect::count(self, Shard::of(id), 0, -gone).await;
                    removed.items += artists.len();
                    removed.artists.extend(artists);
                } else {
                    lost = true;
                }
            }
            if !lost {
                return Ok(removed);
            }
        }
        Err(StoreError::Contended {
            operation: "TransactWriteItems",
        })
    }

    async fn subscriber_count(&self, artist: &ArtistKey) -> Result<u64, StoreError> {
        rooms::subscriber_count(self, artist).await
    }

    async fn users(
        &self,
        ids: &[ConnectionId],
        now: EpochSeconds,
    ) -> Result<Vec<(ConnectionId, UserId)>, StoreError> {
        rooms::users(self, ids, now).await
    }

    async fn spend(
        &self,
        bucket: Bucket<'_>,
        spend: Spend,
        limit: RateLimit,
        now_millis: i64,
    ) -> Result<bool, StoreError> {
        rooms::spend(self, bucket, spend, limit, now_millis).await
    }

    async fn subscribers(
        &self,
        audience: &Audience,
        span: &Span,
        now: EpochSeconds,
        limit: u32,
    ) -> Result<SubscriberPage, StoreError> {
        let partition = schema::audience_shard_pk(audience, span.shard);
        let start = span.after.as_ref().map(|id| {
            let sk = match audience {
                Audience::Artist(key) => subscription_sk(key),
                Audience::Everyone => META.to_owned(),
            };
            Item::from([
                (GSI1PK.to_owned(), s(&partition)),
                (PK.to_owned(), s(connection_pk(id))),
                (SK.to_owned(), s(sk)),
            ])
        });
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(BY_ARTIST_INDEX)
            .filter_expression("#e > :lapsed")
            .projection_expression("#pk, #e")
            .expression_attribute_names("#g", GSI1PK)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":artist", s(&partition))
            .expression_attribute_values(":lapsed", n(now.saturating_sub(LAPSED_WINDOW_SECONDS)))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start);
        query = match &span.until {
            None => query.key_condition_expression("#g = :artist"),
            Some(until) => query
                .key_condition_expression("#g = :artist AND #pk <= :until")
                .expression_attribute_values(":until", s(connection_pk(until))),
        };
        let out = query
            .send()
            .await
            .map_err(|e| StoreError::backend("Query", e))?;
        let mut connections = Vec::new();
        let mut lapsed = Vec::new();
        for item in out.items.unwrap_or_default() {
            let pk = str_attr(&item, PK)?;
            let id = schema::connection_id_from_pk(pk).ok_or_else(|| corrupt(&item, "bad pk"))?;
            if num_attr(&item, EXPIRES_AT)? > now {
                connections.push(id);
            } else {
                lapsed.push(id);
            }
        }
        let next = match out.last_evaluated_key {
            Some(key) if !key.is_empty() => {
                let pk = str_attr(&key, PK)?;
                let id = schema::connection_id_from_pk(pk)
                    .ok_or_else(|| corrupt(&key, "bad pk in LastEvaluatedKey"))?;
                Some(id)
            }
            _ => None,
        };
        Ok(SubscriberPage {
            connections,
            lapsed,
            next,
        })
    }

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
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
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

    async fn sequence(
        &self,
        entry: NewEntry<'_>,
        retention: Retention,
        now: EpochSeconds,
        remember_until: EpochSeconds,
    ) -> Result<u64, StoreError> {
        history::sequence(self, entry, retention, now, remember_until).await
    }

    async fn history(
        &self,
        artist: &ArtistKey,
        after: u64,
        now: EpochSeconds,
        limit: u32,
    ) -> Result<History, StoreError> {
        history::history(self, artist, after, now, limit).await
    }

    async fn admit_connection(
        &self,
        connection: &Connection,
        admission: Admission<'_>,
        now: EpochSeconds,
    ) -> Result<Admitted, StoreError> {
        users::admit(self, connection, admission, now).await
    }

    async fn release_connection(&self, user: &UserId, id: &ConnectionId) -> Result<(), StoreError> {
        users::release(self, user, id).await
    }

    async fn revocation(
        &self,
        user: &UserId,
        now: EpochSeconds,
    ) -> Result<Option<EpochSeconds>, StoreError> {
        users::revocation(self, user, now).await
    }

    async fn revoke_user(
        &self,
        user: &UserId,
        at: EpochSeconds,
        until: EpochSeconds,
        now: EpochSeconds,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        users::revoke(self, user, at, until, now).await
    }
}

/// The revision check-and-set on a connection record that guards every subscription change:
/// a change applies only to the revision it was decided on, and makes a new one.
impl crate::store::Reports for DynamoStore {
    async fn open_report(
        &self,
        id: &EventId,
        start: &crate::report::ReportStart,
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        reports::open(self, id, start, expires_at).await
    }

    async fn register_items(
        &self,
        id: &EventId,
        keys: &[crate::report::ItemKey],
        expires_at: EpochSeconds,
    ) -> Result<(), StoreError> {
        reports::register(self, id, keys, expires_at).await
    }

    async fn finish_item(
        &self,
        id: &EventId,
        key: &crate::report::ItemKey,
        outcome: &crate::report::ItemOutcome,
        expires_at: EpochSeconds,
    ) -> Result<crate::report::Finished, StoreError> {
        reports::finish(self, id, key, outcome, expires_at).await
    }

    async fn delivery_report(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<crate::report::DeliveryReport>, StoreError> {
        reports::read(self, id, now).await
    }

    async fn claim_publication(
        &self,
        id: &EventId,
        now: EpochSeconds,
    ) -> Result<Option<crate::report::DeliveryReport>, StoreError> {
        reports::claim_publication(self, id, now).await
    }

    async fn release_publication(&self, id: &EventId) -> Result<(), StoreError> {
        reports::release_publication(self, id).await
    }
}

fn bump_version(table: &str, pk: &str, expected: u32) -> Result<TransactWriteItem, StoreError> {
    let next = expected.wrapping_add(1);
    let update = Update::builder()
        .table_name(table)
        .key(PK, s(pk))
        .key(SK, s(META))
        .update_expression("SET #v = :next")
        .condition_expression("#v = :expected")
        .expression_attribute_names("#v", "version")
        .expression_attribute_values(":next", n(next))
        .expression_attribute_values(":expected", n(expected))
        .build()
        .map_err(|e| StoreError::backend("TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().update(update).build())
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

fn connection_from_item(id: &ConnectionId, item: &Item) -> Result<(Connection, u32), StoreError> {
    let user_id =
        UserId::parse(str_attr(item, "user_id")?).map_err(|e| corrupt(item, &e.to_string()))?;
    let scope = match key_list(item, "scope")? {
        None => Scope::Any,
        Some(keys) => Scope::Only(keys),
    };
    let version =
        u32::try_from(num_attr(item, "version")?).map_err(|_| corrupt(item, "version range"))?;
    Ok((
        Connection {
            id: id.clone(),
            user_id,
            connected_at: num_attr(item, "connected_at")?,
            expires_at: num_attr(item, EXPIRES_AT)?,
            scope,
            publish: key_list(item, "publish")?.unwrap_or_default(),
        },
        version,
    ))
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

fn key_list(item: &Item, name: &str) -> Result<Option<Vec<ArtistKey>>, StoreError> {
    match item.get(name) {
        None => Ok(None),
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|v| match v {
                AttributeValue::S(key) => Ok(ArtistKey::from_stored(key.clone())),
                _ => Err(corrupt(item, &format!("{name} holds a non-string"))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(corrupt(item, &format!("{name} is not a list"))),
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

//! Connections on the table: a connection's record and subscriptions, written and deleted in
//! transactions that move each artist's subscriber count (`rooms`) and the totals with them;
//! the user's list and revocations are in `users`. The DynamoDB side of
//! [`ConnectionStore`].

use std::collections::BTreeMap;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};

use super::{
    DynamoStore, Item, TRANSACT_MAX, UNPROCESSED_RETRIES, corrupt, inspect, n, num_attr, rooms, s,
    str_attr, unless_condition_failed, users,
};
use crate::domain::{
    Artist, ArtistKey, Connection, ConnectionId, EpochSeconds, Scope, Shard, UserId,
    now_epoch_seconds,
};
use crate::schema::{
    self, EXPIRES_AT, GSI1PK, META, PK, REPLAYED, SK, artist_shard_pk, connection_pk,
    subscription_sk,
};
use crate::store::{
    Admission, Admitted, Applied, ConnectionState, ConnectionStore, Removed, StoreError,
};

impl ConnectionStore for DynamoStore {
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

    async fn users(
        &self,
        ids: &[ConnectionId],
        now: EpochSeconds,
    ) -> Result<Vec<(ConnectionId, UserId)>, StoreError> {
        rooms::users(self, ids, now).await
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

pub(super) fn bump_version(
    table: &str,
    pk: &str,
    expected: u32,
) -> Result<TransactWriteItem, StoreError> {
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

pub(super) fn connection_from_item(
    id: &ConnectionId,
    item: &Item,
) -> Result<(Connection, u32), StoreError> {
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

pub(super) fn key_list(item: &Item, name: &str) -> Result<Option<Vec<ArtistKey>>, StoreError> {
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

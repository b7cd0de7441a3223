//! [`Inspect`] on the table, and the totals counters the write paths move.
//!
//! - The totals are one item per shard (`STATS#<shard>`/`COUNT`, attributes `connections` and
//!   `subscriptions`), moved by a plain `UpdateItem ADD` after the write they count has
//!   succeeded: atomic (no update is lost however many race), and not inside the write's
//!   transaction, because a transaction touching an item every subscribe of the shard touches
//!   would be cancelled by every concurrent one (`TransactionConflict`). Reading them is one
//!   `BatchGetItem` of 16 items.
//! - The top artists: the `by-count` index lists each shard's subscriber counters in count
//!   order. The threshold algorithm reads the 16 lists from the top, a page at a time, and
//!   sums each artist it meets exactly (its 16 counters); it stops once the last of the
//!   `limit` best totals is at least what any artist not yet met could have (the sum of the
//!   lowest count read in each list). Exact, and it reads a few pages, not the table.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{DynamoStore, Item, n, num_attr, s, str_attr};
use crate::domain::{ArtistKey, Shard, UserId};
use crate::schema::{
    ARTIST_NAME, BY_COUNT_INDEX, GSI2PK, PK, SK, STATS_CONNECTIONS, STATS_SK, STATS_SUBSCRIPTIONS,
    SUBSCRIBERS, artist_key_from_pk, counts_pk, stats_pk,
};
use crate::store::StoreError;
use crate::store::inspect::{ArtistCount, Inspect, Listed, Totals, rank};

/// Moves `shard`'s totals by `connections` and `subscriptions`. A failure is logged, not
/// returned: the write it counts has happened, and failing it would make the caller redo it.
pub(super) async fn count(store: &DynamoStore, shard: Shard, connections: i64, subscriptions: i64) {
    if connections == 0 && subscriptions == 0 {
        return;
    }
    let result = store
        .client
        .update_item()
        .table_name(&store.table)
        .key(PK, s(stats_pk(shard)))
        .key(SK, s(STATS_SK))
        .update_expression("ADD #c :c, #s :s")
        .expression_attribute_names("#c", STATS_CONNECTIONS)
        .expression_attribute_names("#s", STATS_SUBSCRIPTIONS)
        .expression_attribute_values(":c", n(connections))
        .expression_attribute_values(":s", n(subscriptions))
        .send()
        .await;
    if let Err(err) = result {
        tracing::warn!(
            shard = shard.number(),
            connections,
            subscriptions,
            error = &StoreError::backend("UpdateItem", err) as &dyn std::error::Error,
            "could not move the totals; they are off by this much"
        );
    }
}

impl Inspect for DynamoStore {
    async fn totals(&self) -> Result<Totals, StoreError> {
        let keys: Vec<Item> = Shard::all()
            .map(|shard| {
                Item::from([
                    (PK.to_owned(), s(stats_pk(shard))),
                    (SK.to_owned(), s(STATS_SK)),
                ])
            })
            .collect();
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::backend("BatchGetItem", e))?;
        let (mut connections, mut subscriptions) = (0_i64, 0_i64);
        for item in super::rooms::batch_get(self, request).await? {
            connections = connections.saturating_add(optional(&item, STATS_CONNECTIONS)?);
            subscriptions = subscriptions.saturating_add(optional(&item, STATS_SUBSCRIPTIONS)?);
        }
        Ok(Totals {
            connections: u64::try_from(connections).unwrap_or(0),
            subscriptions: u64::try_from(subscriptions).unwrap_or(0),
        })
    }

    async fn top_artists(&self, limit: usize) -> Result<Vec<ArtistCount>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let page = i32::try_from(limit.clamp(10, 100)).unwrap_or(100);
        let mut lists: Vec<List> = Shard::all().map(List::new).collect();
        let mut met: HashSet<ArtistKey> = HashSet::new();
        let mut best: Vec<ArtistCount> = Vec::new();
        loop {
            let mut new = Vec::new();
            for list in lists.iter_mut().filter(|l| !l.done) {
                for (key, name) in list.next_page(self, page).await? {
                    if met.insert(key.clone()) {
                        new.push((key, name));
                    }
                }
            }
            for (key, name) in new {
                let subscribers = super::rooms::subscriber_count(self, &key).await?;
                if subscribers > 0 {
                    best.push(ArtistCount {
                        name: name.unwrap_or_else(|| key.as_str().to_owned()),
                        key,
                        subscribers,
                    });
                }
            }
            rank(&mut best);
            best.truncate(limit);
            // What an artist met in no list yet can have at most: in each list still open, no
            // more than the lowest count read there; in a list read to its end, nothing.
            let ceiling: u64 = lists
                .iter()
                .filter(|l| !l.done)
                .fold(0_u64, |sum, l| sum.saturating_add(l.lowest));
            let full = best.len() == limit && best.last().is_some_and(|b| b.subscribers >= ceiling);
            if full || lists.iter().all(|l| l.done) || ceiling == 0 {
                return Ok(best);
            }
        }
    }

    async fn user_connections(&self, user: &UserId) -> Result<Vec<Listed>, StoreError> {
        let mut listed: Vec<Listed> = super::users::listed_of(self, user)
            .await?
            .into_iter()
            .map(|(id, expires_at)| Listed { id, expires_at })
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listed)
    }
}

/// One shard's list in the `by-count` index, read from the top.
struct List {
    shard: Shard,
    start: Option<Item>,
    /// The lowest count read so far (the first page not read yet: unknown, so no bound).
    lowest: u64,
    done: bool,
}

impl List {
    fn new(shard: Shard) -> Self {
        Self {
            shard,
            start: None,
            lowest: u64::MAX,
            done: false,
        }
    }

    /// The artists (and kept names) of the next page, most subscribers first.
    async fn next_page(
        &mut self,
        store: &DynamoStore,
        page: i32,
    ) -> Result<Vec<(ArtistKey, Option<String>)>, StoreError> {
        let out = store
            .client
            .query()
            .table_name(&store.table)
            .index_name(BY_COUNT_INDEX)
            .key_condition_expression("#g = :g")
            .expression_attribute_names("#g", GSI2PK)
            .expression_attribute_values(":g", s(counts_pk(self.shard)))
            .scan_index_forward(false)
            .limit(page)
            .set_exclusive_start_key(self.start.take())
            .send()
            .await
            .map_err(|e| StoreError::backend("Query", e))?;
        let items = out.items.unwrap_or_default();
        let mut artists = Vec::with_capacity(items.len());
        for item in &items {
            let key = artist_key_from_pk(str_attr(item, PK)?)
                .ok_or_else(|| super::corrupt(item, "not an artist counter"))?;
            let count = num_attr(item, SUBSCRIBERS)?;
            self.lowest = u64::try_from(count).unwrap_or(0);
            let name = match item.get(ARTIST_NAME) {
                Some(AttributeValue::S(name)) => Some(name.clone()),
                _ => None,
            };
            artists.push((key, name));
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => self.start = Some(key),
            _ => self.done = true,
        }
        if items.is_empty() {
            self.done = true;
        }
        Ok(artists)
    }
}

/// A number attribute that may be absent (0 then).
fn optional(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        None => Ok(0),
        Some(_) => num_attr(item, name),
    }
}

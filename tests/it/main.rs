//! Marquee's integration tests, in one binary (one link of the AWS SDK instead of six).
//! Run them with `scripts/test`, which starts DynamoDB Local.

// Tests state their expectations with unwrap and indexing; a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub
)]

/// Runs each named `async fn case<S: Store>(store: S)` of the calling module against both
/// stores: `MemoryStore` (which the module imports) and a fresh DynamoDB Local table.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::MemoryStore::new()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(marquee_tests::fresh_table().await).await;
                }
            )*
        }
    };
}

/// Runs each named `async fn case(backing: Backing)` of the calling module through the local
/// gateway twice: on the embedded store and on DynamoDB Local.
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backing::Memory).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backing::Dynamo).await;
                }
            )*
        }
    };
}

/// A realistic 98-character artist name whose key is 102 characters: NFKC makes `№` `no`,
/// `Ⅸ` `ix` and `…` `...`, so the key is longer than a display name may be.
const LONG_KEY_NAME: &str = "The Royal Concertgebouw Symphony Orchestra & Choir \u{2116} \u{2168}\u{2026} Beethoven Symphony No. 9 Live in Amsterdam";

mod admin;
mod budget;
mod contract;
mod events;
mod fanout;
mod gateway;
mod gateway_close;
mod gateway_identity;
mod gateway_resume;
mod gateway_rooms;
mod gateway_users;
mod history;
mod iam;
mod layers;
mod literals;
mod messages;
mod notify;
mod queue;
mod readme_map;
mod report;
mod resume;
mod rooms;
mod smoke;
mod template;
mod tokens;
mod tokens_provider;
mod trace;

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

mod contract;
mod events;
mod fanout;
mod gateway;
mod history;
mod messages;
mod notify;
mod queue;
mod resume;
mod smoke;
mod template;
mod tokens;

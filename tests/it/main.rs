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

mod contract;
mod events;
mod fanout;
mod gateway;
mod messages;
mod notify;
mod queue;
mod smoke;
mod template;
mod tokens;

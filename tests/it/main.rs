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

#[macro_use]
mod support;

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

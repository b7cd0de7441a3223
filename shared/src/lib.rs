//! Marquee: fans connect over an API Gateway WebSocket with a signed token, subscribe to
//! artists, and are pushed a message the moment tickets go on sale.
//!
//! This crate holds everything but the Lambda runtime wiring (which lives in `functions/*`):
//!
//! - [`domain`]: validated types (connection ids, artists, scopes, connections).
//! - [`auth`]: connection tokens (HS256, and a provider's through [`oidc`]).
//! - [`oidc`]: tokens from an OpenID Connect provider, checked against its JWKS.
//! - [`wire`]: the JSON frames between clients and Marquee.
//! - [`function`]: which of the Lambda functions is running (one name per function).
//! - [`config`]: configuration from the environment.
//! - [`schema`]: the single-table layout, defined once.
//! - [`store`]: the `Store` port and its DynamoDB and in-memory adapters.
//! - [`budget`]: the `Budget` port (the account's posting budget) and its DynamoDB and
//!   in-memory adapters.
//! - [`push`]: the `Push` port and its Management API and recording adapters.
//! - [`queue`]: the `Queue` port (fan-out work items) and its SQS and in-process adapters.
//! - [`report`]: delivery reports (counted once per work item), `FanoutCompleted` and the
//!   `Events` port that sends it.
//! - [`work`]: what flows through the fan-out pipeline: notifications and work items.
//! - [`routes`]: the route logic (connect, disconnect, messages, notify, deliver), generic
//!   over ports.
//! - [`lambda`]: handlers from `aws_lambda_events` types to route logic, and their deps.
//! - [`telemetry`]: JSON logging; [`metrics`]: CloudWatch Embedded Metric Format.
//! - `testing` (tests, and the `test-support` feature): builders for tests
//!   (`Connection::builder`).

pub mod auth;
pub mod budget;
pub mod claims;
pub mod config;
pub mod domain;
pub mod function;
pub mod lambda;
pub mod metrics;
pub mod oidc;
pub mod push;
pub mod queue;
pub mod report;
pub mod routes;
pub mod schema;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod trace;
pub mod wire;
pub mod work;

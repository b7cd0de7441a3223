//! The client library (`clients/js`) agrees with the server where it mirrors it: the fixtures
//! in `fixtures/` hold what both sides must agree on, and the node tests
//! (`clients/js/tests/fixtures.test.mjs`) hold the client to the same files.
//!
//! - `fixtures/client-limits.json`: the server's limits the client mirrors.

// Tests state their expectations with unwrap and indexing; a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use marquee::domain::MAX_ARTISTS_PER_MESSAGE;
use marquee::wire::MAX_PUBLISH_DATA_BYTES;
use serde_json::Value;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn fixture(name: &str) -> Value {
    let path = workspace().join("fixtures").join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[test]
fn the_limits_the_client_mirrors_are_the_servers() {
    let limits = fixture("client-limits.json");

    assert_eq!(
        (
            limits["MAX_ARTISTS_PER_MESSAGE"].as_u64(),
            limits["MAX_DATA_BYTES"].as_u64(),
        ),
        (
            Some(u64::try_from(MAX_ARTISTS_PER_MESSAGE).unwrap()),
            Some(u64::try_from(MAX_PUBLISH_DATA_BYTES).unwrap()),
        )
    );
}

//! The client library (`clients/js`) agrees with the server where it mirrors it: the fixtures
//! in `fixtures/` hold what both sides must agree on, and the node tests
//! (`clients/js/tests/fixtures.test.mjs`) hold the client to the same files.
//!
//! - `fixtures/artist-keys.json`: spellings of artist names and the key the server gives
//!   them, or the refusal.
//! - `fixtures/client-limits.json`: the server's limits the client mirrors.
//! - `marquee.js`'s `FOLD_TABLE`: where the server's case folding differs from lower-casing one
//!   code point, generated here from the same `caseless` crate the key uses. The test fails
//!   when it is stale; `MARQUEE_WRITE_FOLDS=1` rewrites it.

// Tests state their expectations with unwrap and indexing; a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use marquee::domain::{Artist, MAX_ARTISTS_PER_MESSAGE};
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

fn client_library() -> PathBuf {
    workspace().join("clients/js/marquee.js")
}

#[test]
fn every_spelling_in_the_shared_fixture_gets_its_key_or_its_refusal() {
    let fixture = fixture("artist-keys.json");

    let mut wrong = Vec::new();
    for group in fixture["groups"].as_array().unwrap() {
        for name in group["names"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            let got = match Artist::parse(name) {
                Ok(artist) => ("key", artist.key().as_str().to_owned()),
                Err(refusal) => ("invalid", format!("{refusal:?}")),
            };
            let expected = if let Some(key) = group.get("key") {
                ("key", key.as_str().unwrap().to_owned())
            } else {
                ("invalid", group["invalid"].as_str().unwrap().to_owned())
            };
            if got != expected {
                wrong.push(format!("{name:?}: {got:?}, fixture {expected:?}"));
            }
        }
    }

    assert_eq!(wrong, Vec::<String>::new());
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

/// The first and last lines of the generated table in `marquee.js`.
const TABLE_START: &str = "const FOLD_TABLE = [\n";
const TABLE_END: &str = "].join(' ');\n";

/// Every code point whose full case folding (the server's, `caseless`) is not its lower case
/// (Rust's `char::to_lowercase`, which JavaScript's `toLowerCase` of one code point matches),
/// as `hex=hex.hex` entries, in lines of `marquee.js` of at most 100 characters.
fn fold_table() -> String {
    let mut entries = Vec::new();
    for c in (0..=0x10_FFFF_u32).filter_map(char::from_u32) {
        let folded = caseless::default_case_fold_str(c.encode_utf8(&mut [0; 4]));
        if folded != c.to_lowercase().collect::<String>() {
            let to: Vec<String> = folded
                .chars()
                .map(|f| format!("{:x}", u32::from(f)))
                .collect();
            entries.push(format!("{:x}={}", u32::from(c), to.join(".")));
        }
    }
    let mut lines: Vec<String> = Vec::new();
    for entry in entries {
        match lines.last_mut() {
            // `  '` + the line + ` ` + the entry + `',` within 100.
            Some(line) if line.len() + entry.len() + 6 <= 100 => {
                line.push(' ');
                line.push_str(&entry);
            }
            _ => lines.push(entry),
        }
    }
    let mut table = String::from(TABLE_START);
    for line in lines {
        table.push_str(&format!("  '{line}',\n"));
    }
    table.push_str(TABLE_END);
    table
}

#[test]
fn the_client_librarys_fold_table_is_the_servers_case_folding() {
    let path = client_library();
    let source = std::fs::read_to_string(&path).unwrap();
    let start = source
        .find(TABLE_START)
        .expect("marquee.js has a FOLD_TABLE");
    let end = start + source[start..].find(TABLE_END).unwrap() + TABLE_END.len();

    let generated = fold_table();

    if std::env::var_os("MARQUEE_WRITE_FOLDS").is_some() {
        let rewritten = format!("{}{generated}{}", &source[..start], &source[end..]);
        std::fs::write(&path, rewritten).unwrap();
        return;
    }
    assert!(
        source[start..end] == generated,
        "marquee.js's FOLD_TABLE is stale: rewrite it with \
         MARQUEE_WRITE_FOLDS=1 cargo test --workspace --test client"
    );
}

//! The binary's contract with scripts: bad usage and bad input exit 2 with a message on stderr,
//! before anything is called (the endpoints here lead nowhere, so any call would fail with 1).

#![allow(clippy::panic)]

use std::process::Command;

fn admin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_marquee-admin"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap_or_else(|e| panic!("run marquee-admin: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const NOWHERE: [&str; 4] = ["--endpoint", "http://127.0.0.1:9", "--table", "t"];

#[test]
fn a_malformed_connection_id_exits_2_and_calls_nothing() {
    let mut args = NOWHERE.to_vec();
    args.extend(["disconnect", "not a connection id!"]);
    let (code, stdout, stderr) = admin(&args);
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("marquee-admin: connection \"not a connection id!\""),
        "{stderr}"
    );
}

#[test]
fn a_blank_user_exits_2() {
    let mut args = NOWHERE.to_vec();
    args.extend(["user", " "]);
    let (code, stdout, stderr) = admin(&args);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(stderr.starts_with("marquee-admin: user \" \""), "{stderr}");
}

#[test]
fn no_target_exits_2_and_says_what_to_give() {
    let (code, _, stderr) = admin(&["stats"]);
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "marquee-admin: give --stack <NAME>, or local endpoints (--endpoint and --table, \
         --management-endpoint, --sqs-endpoint)\n"
    );
}

#[test]
fn an_unknown_queue_is_bad_usage() {
    let (code, _, stderr) = admin(&["dlq", "--queue", "everything"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid value 'everything'"), "{stderr}");
}

#[test]
fn a_table_that_cannot_be_reached_exits_1() {
    let mut args = NOWHERE.to_vec();
    args.push("stats");
    let (code, stdout, stderr) = admin(&args);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains("marquee-admin: "), "{stderr}");
}

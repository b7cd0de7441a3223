//! The IAM check's evaluation, against the real `template.yaml`: what it allows, what it
//! denies, and that removing a grant the code needs makes the check fail.

use std::collections::BTreeSet;

use marquee_tests::iam::policy::{Decision, Policies};
use marquee_tests::iam::{Call, Target};
use serde_norway::Value;

fn template_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap()
}

fn policies() -> Policies {
    Policies::from_template(&template_text()).unwrap()
}

fn call(function: &str, action: &str, target: Target, keys: &[&str]) -> Call {
    Call {
        function: function.to_owned(),
        operation: action.rsplit(':').next().unwrap().to_owned(),
        action: action.to_owned(),
        target,
        leading_keys: keys
            .iter()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>(),
        test: None,
    }
}

fn table() -> Target {
    Target::Table { index: None }
}

fn allowed(policies: &Policies, call: &Call) -> bool {
    matches!(policies.decide(call), Decision::Allowed(_))
}

#[test]
fn every_function_in_the_template_has_a_policy_the_check_can_read() {
    let policies = policies();
    let functions: Vec<&str> = policies.functions.keys().map(String::as_str).collect();
    assert_eq!(
        functions,
        [
            "ConnectFunction",
            "DeliverFunction",
            "DisconnectFunction",
            "NotifyFunction",
            "SubscribeFunction"
        ]
    );
}

#[test]
fn reading_a_rooms_members_is_allowed_and_is_denied_once_its_grant_is_removed() {
    let members = call(
        "SubscribeFunction",
        "dynamodb:BatchGetItem",
        table(),
        &["CONN#a", "CONN#b"],
    );
    assert!(allowed(&policies(), &members));

    // The template as it was before the grant: SubscribeFunction without its BatchGetItem
    // statement.
    let mut doc: Value = serde_norway::from_str(&template_text()).unwrap();
    let statements =
        doc["Resources"]["SubscribeFunction"]["Properties"]["Policies"][0]["Statement"]
            .as_sequence_mut()
            .unwrap();
    let before = statements.len();
    statements.retain(|s| s["Action"].as_str() != Some("dynamodb:BatchGetItem"));
    assert_eq!(
        statements.len(),
        before - 1,
        "the grant was there to remove"
    );
    let without = Policies::from_value(&doc).unwrap();

    assert_eq!(
        without.decide(&members),
        Decision::Denied {
            resource: Some("arn:aws:dynamodb:us-east-1:123456789012:table/Table".to_owned()),
            reason: "no statement allows it".to_owned(),
        }
    );
}

#[test]
fn a_write_is_allowed_only_under_the_leading_keys_the_template_names() {
    let policies = policies();
    let claim = call("NotifyFunction", "dynamodb:PutItem", table(), &["EVENT#e1"]);
    let connection = call("NotifyFunction", "dynamodb:PutItem", table(), &["CONN#a"]);
    let both = call(
        "NotifyFunction",
        "dynamodb:PutItem",
        table(),
        &["EVENT#e1", "CONN#a"],
    );
    assert!(allowed(&policies, &claim));
    assert!(!allowed(&policies, &connection));
    assert!(
        !allowed(&policies, &both),
        "ForAllValues: every key must fit"
    );
}

#[test]
fn a_query_of_the_index_needs_the_index_among_the_resources() {
    let policies = policies();
    let by_artist = Target::Table {
        index: Some("by-artist".to_owned()),
    };
    assert!(allowed(
        &policies,
        &call(
            "SubscribeFunction",
            "dynamodb:Query",
            by_artist.clone(),
            &["ARTIST#a#1"]
        )
    ));
    assert!(!allowed(
        &policies,
        &call(
            "ConnectFunction",
            "dynamodb:Query",
            by_artist,
            &["ARTIST#a#1"]
        )
    ));
}

#[test]
fn a_call_on_a_resource_the_functions_environment_does_not_name_is_denied() {
    let decision = policies().decide(&call(
        "ConnectFunction",
        "sqs:SendMessage",
        Target::Queue,
        &[],
    ));
    let Decision::Denied { resource, reason } = decision else {
        panic!("connect has no work queue");
    };
    assert_eq!(resource, None);
    assert!(reason.contains("WORK_QUEUE_URL"), "{reason}");
}

#[test]
fn each_management_api_method_needs_its_own_grant() {
    let policies = policies();
    let method = |m: &str| Target::Connection {
        method: m.to_owned(),
    };
    let post = call(
        "DisconnectFunction",
        "execute-api:ManageConnections",
        method("POST"),
        &[],
    );
    let delete = call(
        "DisconnectFunction",
        "execute-api:ManageConnections",
        method("DELETE"),
        &[],
    );
    assert!(allowed(&policies, &post));
    assert!(!allowed(&policies, &delete));
}

#[test]
fn a_request_the_check_does_not_understand_is_denied() {
    let unknown = call(
        "NotifyFunction",
        "unknown",
        Target::Unknown {
            request: "GET http://127.0.0.1/health".to_owned(),
        },
        &[],
    );
    assert!(!allowed(&policies(), &unknown));
}

#[test]
fn a_policy_the_check_cannot_model_is_an_error_not_an_allow() {
    let mut doc: Value = serde_norway::from_str(&template_text()).unwrap();
    let policies = doc["Resources"]["NotifyFunction"]["Properties"]["Policies"]
        .as_sequence_mut()
        .unwrap();
    policies.push(serde_norway::from_str("DynamoDBCrudPolicy: {TableName: marquee}").unwrap());
    let error = Policies::from_value(&doc).unwrap_err();
    assert!(error.contains("NotifyFunction"), "{error}");
    assert!(error.contains("inline statements only"), "{error}");
}

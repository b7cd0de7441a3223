//! One of each literal (issue 21, item 7): the EventBridge names and the dev secret are Rust
//! constants, and every file that must spell one out itself (the template, the sample events,
//! the local env files, the token script) is held to the constant here. No service needed.

use marquee::config::DEV_TOKEN_SECRET;
use marquee::lambda::notify::{
    ANNOUNCEMENT_DETAIL_TYPE, DEFAULT_ON_SALE_DETAIL_TYPE, REVOKE_DETAIL_TYPE,
};
use marquee::report::{DEFAULT_EVENT_SOURCE, FANOUT_COMPLETED_DETAIL_TYPE};
use marquee_tests::{event_json, events_dir};

use crate::template::{intrinsic, resource, resources_of_type, template, workspace};

/// The one pattern value of a rule's `field`: `[x]`, never several.
fn only_pattern<'r>(rule: &'r serde_norway::Value, field: &str) -> &'r serde_norway::Value {
    let values = rule["Properties"]["EventPattern"][field]
        .as_sequence()
        .unwrap_or_else(|| panic!("{field} is not a list: {rule:?}"));
    assert_eq!(values.len(), 1, "one {field}: {values:?}");
    &values[0]
}

#[test]
fn the_template_defaults_are_the_code_constants_for_the_event_source_and_on_sale_type() {
    let template = template();

    let parameters = &template["Parameters"];

    assert_eq!(
        (
            parameters["EventSource"]["Default"].as_str(),
            parameters["EventDetailType"]["Default"].as_str(),
        ),
        (
            Some(DEFAULT_EVENT_SOURCE),
            Some(DEFAULT_ON_SALE_DETAIL_TYPE)
        )
    );
}

/// A pattern value as written: `!Ref Name`, or the literal.
fn written(value: &serde_norway::Value) -> String {
    intrinsic(value, "Ref").map_or_else(
        || value.as_str().unwrap().to_owned(),
        |name| format!("!Ref {name}"),
    )
}

#[test]
fn each_rule_matches_the_event_source_and_one_detail_type_the_code_names() {
    let template = template();

    let rule = |name: &str| {
        let rule = resource(&template, name);
        (
            written(only_pattern(rule, "source")),
            written(only_pattern(rule, "detail-type")),
        )
    };

    let own = |detail_type: &str| ("!Ref EventSource".to_owned(), detail_type.to_owned());
    assert_eq!(rule("TicketsOnSaleRule"), own("!Ref EventDetailType"));
    assert_eq!(rule("AnnouncementRule"), own(ANNOUNCEMENT_DETAIL_TYPE));
    assert_eq!(rule("RevokeRule"), own(REVOKE_DETAIL_TYPE));
    assert_eq!(
        resources_of_type(&template, "AWS::Events::Rule").len(),
        3,
        "a new rule needs its detail type checked here"
    );
}

#[test]
fn every_sample_eventbridge_event_has_the_source_and_a_detail_type_the_code_names() {
    let mut seen = Vec::new();

    for entry in std::fs::read_dir(events_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") {
            continue;
        }
        let event = event_json(&name);
        let Some(source) = event.get("source") else {
            continue;
        };
        assert_eq!(source, DEFAULT_EVENT_SOURCE, "{name}");
        seen.push((name, event["detail-type"].as_str().unwrap().to_owned()));
    }
    seen.sort();

    let own = |name: &str, detail_type: &str| (name.to_owned(), detail_type.to_owned());
    assert_eq!(
        seen,
        [
            own("announce.json", ANNOUNCEMENT_DETAIL_TYPE),
            own("notify-invalid.json", DEFAULT_ON_SALE_DETAIL_TYPE),
            own("notify.json", DEFAULT_ON_SALE_DETAIL_TYPE),
            own("revoke.json", REVOKE_DETAIL_TYPE),
        ]
    );
    assert!(
        !seen
            .iter()
            .any(|(_, detail_type)| detail_type == FANOUT_COMPLETED_DETAIL_TYPE),
        "FanoutCompleted is ours to send, not an event we take"
    );
}

#[test]
fn the_local_env_files_and_the_token_script_hold_the_dev_secret() {
    let read = |path: &str| std::fs::read_to_string(workspace().join(path)).unwrap();

    let local_env: Vec<String> = read("local.env")
        .lines()
        .filter_map(|line| line.strip_prefix("TOKEN_SECRET="))
        .map(str::to_owned)
        .collect();
    let sam_local: serde_json::Value = serde_json::from_str(&read("sam-local.env.json")).unwrap();
    let script: Vec<String> = read("scripts/mint-sample-tokens.py")
        .lines()
        .filter_map(|line| line.strip_prefix("LOCAL_SECRET = "))
        .map(|value| value.trim_matches('"').to_owned())
        .collect();

    assert_eq!(local_env, [DEV_TOKEN_SECRET]);
    assert_eq!(
        sam_local["ConnectFunction"]["TOKEN_SECRET"],
        DEV_TOKEN_SECRET
    );
    assert_eq!(script, [DEV_TOKEN_SECRET]);
}

//! `template.yaml` agrees with the schema defined once in `marquee::schema`, wires every
//! route and binary the workspace has, and gives the fan-out's work queue the limits its
//! delivery relies on.

use std::collections::BTreeSet;
use std::path::Path;

use marquee::schema::TABLE;
use serde_norway::Value;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn template() -> Value {
    let path = workspace().join("template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn resource<'t>(template: &'t Value, name: &str) -> &'t Value {
    template["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("resource {name} missing"))
}

/// The argument of a short-form intrinsic such as `!Ref Name` or `!GetAtt Name.Arn`.
fn intrinsic<'v>(value: &'v Value, function: &str) -> Option<&'v str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == function => tagged.value.as_str(),
        _ => None,
    }
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value:?} is not a number"))
}

/// The binaries the crates under `functions/` build: their `[[bin]]` names, or the package
/// name when a crate declares none. Read line by line: the manifests are plain, and the tests
/// need no TOML parser for this.
fn function_binaries() -> BTreeSet<String> {
    let mut binaries = BTreeSet::new();
    for entry in std::fs::read_dir(workspace().join("functions")).unwrap() {
        let Ok(manifest) = std::fs::read_to_string(entry.unwrap().path().join("Cargo.toml")) else {
            continue;
        };
        let (mut section, mut package, mut bins) = (String::new(), None, Vec::new());
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                line.clone_into(&mut section);
            } else if let Some((key, value)) = line.split_once('=')
                && key.trim() == "name"
            {
                let name = value.trim().trim_matches('"').to_owned();
                match section.as_str() {
                    "[package]" => package = Some(name),
                    "[[bin]]" => bins.push(name),
                    _ => {}
                }
            }
        }
        if bins.is_empty() {
            bins.extend(package);
        }
        binaries.extend(bins);
    }
    binaries
}

fn resources_of_type(template: &Value, kind: &str) -> Vec<Value> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some(kind))
        .cloned()
        .collect()
}

fn key_schema(value: &Value) -> Vec<(String, bool)> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap() == "HASH",
            )
        })
        .collect()
}

fn expected_key(parts: &[marquee::schema::KeyPart; 2]) -> Vec<(String, bool)> {
    parts
        .iter()
        .map(|p| (p.attribute.to_owned(), p.hash))
        .collect()
}

#[test]
fn the_template_table_matches_the_schema_in_code() {
    let tables = resources_of_type(&template(), "AWS::DynamoDB::Table");
    assert_eq!(tables.len(), 1);
    let table = &tables[0]["Properties"];
    assert!(table.get("TableName").is_none(), "no fixed table name");
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));

    let attributes: BTreeSet<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = TABLE
        .string_attributes
        .iter()
        .map(|a| ((*a).to_owned(), "S".to_owned()))
        .collect();
    assert_eq!(attributes, expected);
    assert_eq!(key_schema(&table["KeySchema"]), expected_key(&TABLE.key));

    let indexes = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    assert_eq!(indexes.len(), TABLE.indexes.len());
    for expected in TABLE.indexes {
        let index = indexes
            .iter()
            .find(|i| i["IndexName"].as_str() == Some(expected.name))
            .unwrap_or_else(|| panic!("index {} missing", expected.name));
        assert_eq!(key_schema(&index["KeySchema"]), expected_key(&expected.key));
        assert_eq!(
            index["Projection"]["ProjectionType"].as_str(),
            Some("INCLUDE")
        );
        let included: Vec<&str> = index["Projection"]["NonKeyAttributes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(included, expected.include);
    }
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(TABLE.ttl_attribute)
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
}

#[test]
fn the_template_routes_every_route_key_and_builds_every_binary() {
    let template = template();
    let routes: BTreeSet<String> = resources_of_type(&template, "AWS::ApiGatewayV2::Route")
        .iter()
        .map(|r| r["Properties"]["RouteKey"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from(
            [
                "$connect",
                "$disconnect",
                "subscribe",
                "unsubscribe",
                "$default"
            ]
            .map(String::from)
        )
    );
    let binaries: BTreeSet<String> = resources_of_type(&template, "AWS::Serverless::Function")
        .iter()
        .map(|f| {
            assert_eq!(
                f["Metadata"]["BuildMethod"].as_str(),
                Some("rust-cargolambda")
            );
            f["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(binaries.contains("marquee-connect"), "{binaries:?}");
    assert_eq!(
        binaries,
        function_binaries(),
        "every binary under functions/ has a template function, and every template function a binary"
    );
}

#[test]
fn the_deliver_function_works_the_queue_with_partial_failures_and_a_concurrency_cap() {
    let template = template();
    let deliver = resource(&template, "DeliverFunction");
    assert_eq!(deliver["Type"].as_str(), Some("AWS::Serverless::Function"));
    assert_eq!(
        deliver["Metadata"]["BuildProperties"]["Binary"].as_str(),
        Some("marquee-deliver")
    );
    assert!(
        deliver["Properties"].get("Events").is_none(),
        "a SAM SQS event would attach AWSLambdaSQSQueueExecutionRole, which reaches every queue"
    );
    assert_eq!(
        deliver["Properties"]["RecursiveLoop"].as_str(),
        Some("Allow"),
        "continuations chain past Lambda's 16-hop loop detection"
    );
    let variables = &deliver["Properties"]["Environment"]["Variables"];
    for (variable, parameter) in [
        ("WORK_QUEUE_URL", "WorkQueue"),
        ("FANOUT_BUDGET", "FanoutBudget"),
        ("DELIVER_MAX_CONCURRENCY", "DeliverConcurrency"),
    ] {
        assert_eq!(
            intrinsic(&variables[variable], "Ref"),
            Some(parameter),
            "{variable}"
        );
    }

    let sources: Vec<Value> = resources_of_type(&template, "AWS::Lambda::EventSourceMapping")
        .into_iter()
        .filter(|m| intrinsic(&m["Properties"]["FunctionName"], "Ref") == Some("DeliverFunction"))
        .collect();
    assert_eq!(sources.len(), 1, "one event source feeds DeliverFunction");
    let source = &sources[0]["Properties"];
    assert_eq!(
        intrinsic(&source["EventSourceArn"], "GetAtt"),
        Some("WorkQueue.Arn")
    );
    assert_eq!(number(&source["BatchSize"]), 1);
    let response_types: Vec<&str> = source["FunctionResponseTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(response_types, ["ReportBatchItemFailures"]);
    assert_eq!(
        intrinsic(&source["ScalingConfig"]["MaximumConcurrency"], "Ref"),
        Some("DeliverConcurrency"),
        "the deliver functions share FanoutBudget by this cap"
    );
    let parameter = &template["Parameters"]["DeliverConcurrency"];
    assert!(number(&parameter["MinValue"]) >= 2 && number(&parameter["MaxValue"]) <= 1000);
}

#[test]
fn the_work_queue_outlasts_a_deliver_invocation_and_dead_letters_what_keeps_failing() {
    let template = template();
    let timeout = number(&resource(&template, "DeliverFunction")["Properties"]["Timeout"]);
    let queue = resource(&template, "WorkQueue");
    assert_eq!(queue["Type"].as_str(), Some("AWS::SQS::Queue"));
    let visibility = number(&queue["Properties"]["VisibilityTimeout"]);
    assert!(
        visibility >= 6 * timeout,
        "VisibilityTimeout {visibility} s is under 6 x DeliverFunction's Timeout {timeout} s"
    );

    let redrive = &queue["Properties"]["RedrivePolicy"];
    let dead_letters = intrinsic(&redrive["deadLetterTargetArn"], "GetAtt")
        .and_then(|arn| arn.strip_suffix(".Arn"))
        .unwrap();
    assert_eq!(
        resource(&template, dead_letters)["Type"].as_str(),
        Some("AWS::SQS::Queue")
    );
    assert_ne!(dead_letters, "WorkQueue");
    assert!((1..=10).contains(&number(&redrive["maxReceiveCount"])));
}

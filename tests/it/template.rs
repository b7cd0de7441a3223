//! `template.yaml` agrees with the schema defined once in `marquee::schema`, wires every
//! route and binary the workspace has, gives the fan-out's work queue the limits its
//! delivery relies on, and keeps its operations promises: bounded logs, an alarm on every
//! dead-letter queue, a stage that deploys every route change, narrowed writes, and a
//! dashboard CloudWatch will accept.

use std::collections::BTreeSet;
use std::path::Path;

use marquee::config::{LOCAL_ONLY, PLATFORM};
use marquee::function::Function;
use marquee::schema::TABLE;
use serde_norway::Value;

pub(crate) fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

pub(crate) fn template() -> Value {
    let path = workspace().join("template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(crate) fn resource<'t>(template: &'t Value, name: &str) -> &'t Value {
    template["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("resource {name} missing"))
}

/// The argument of a short-form intrinsic such as `!Ref Name` or `!GetAtt Name.Arn`.
pub(crate) fn intrinsic<'v>(value: &'v Value, function: &str) -> Option<&'v str> {
    tagged(value, function).and_then(Value::as_str)
}

/// Whatever a short-form intrinsic takes, such as the list of `!If [Condition, a, b]`.
fn tagged<'v>(value: &'v Value, function: &str) -> Option<&'v Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == function => Some(&tagged.value),
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

pub(crate) fn resources_of_type(template: &Value, kind: &str) -> Vec<Value> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some(kind))
        .cloned()
        .collect()
}

/// `(logical id, resource)` of every resource of `kind`.
fn named_resources_of_type(template: &Value, kind: &str) -> Vec<(String, Value)> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// A value that is one string or a list of strings, as IAM's `Action` is.
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(Value::as_str).collect(),
        other => other.as_str().into_iter().collect(),
    }
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
        .chain(
            TABLE
                .number_attributes
                .iter()
                .map(|a| ((*a).to_owned(), "N".to_owned())),
        )
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
    let mut expected = BTreeSet::from(["$connect", "$disconnect", "$default"].map(String::from));
    expected.extend(
        marquee::wire::MESSAGE_ROUTES
            .iter()
            .map(|r| (*r).to_owned()),
    );
    assert_eq!(routes, expected);
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
    assert_eq!(
        variables["FANOUT_BUDGET"],
        serde_norway::from_str::<Value>(
            "!If [BudgetFromRegion, !If [LowQuotaRegion, 1250, 5000], !Ref FanoutBudget]"
        )
        .unwrap(),
        "FANOUT_BUDGET is FanoutBudget, or half the Region's default quota when it is 0"
    );
    for (variable, parameter) in [
        ("WORK_QUEUE_URL", "WorkQueue"),
        ("DELIVER_MAX_CONCURRENCY", "DeliverConcurrency"),
    ] {
        assert_eq!(
            intrinsic(&variables[variable], "Ref"),
            Some(parameter),
            "{variable}"
        );
    }

    let mut sources: Vec<(String, Value)> =
        named_resources_of_type(&template, "AWS::Lambda::EventSourceMapping")
            .into_iter()
            .filter(|(_, m)| {
                intrinsic(&m["Properties"]["FunctionName"], "Ref") == Some("DeliverFunction")
            })
            .collect();
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = sources.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        ["DeliverRoomsSource", "DeliverWorkSource"],
        "two event sources feed DeliverFunction: the work queue and the rooms'"
    );
    for ((name, mapping), (queue, cap)) in sources.iter().zip([
        ("RoomsQueue.Arn", "RoomsDeliverConcurrency"),
        ("WorkQueue.Arn", "DeliverConcurrency"),
    ]) {
        let source = &mapping["Properties"];
        assert_eq!(intrinsic(&source["EventSourceArn"], "GetAtt"), Some(queue));
        assert_eq!(number(&source["BatchSize"]), 1, "{name}");
        let response_types: Vec<&str> = source["FunctionResponseTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(response_types, ["ReportBatchItemFailures"], "{name}");
        assert_eq!(
            intrinsic(&source["ScalingConfig"]["MaximumConcurrency"], "Ref"),
            Some(cap),
            "{name}: each source has its own cap"
        );
        let parameter = &template["Parameters"][cap];
        assert!(number(&parameter["MinValue"]) >= 2 && number(&parameter["MaxValue"]) <= 1000);
    }
    // A reservation must cover every source's cap, and CloudFormation cannot add two
    // parameters: with one, the rooms' source is left out and their items share WorkQueue.
    let (_, rooms) = &sources[0];
    assert_eq!(rooms["Condition"].as_str(), Some("HasRoomsSource"));
    assert_eq!(
        variables["ROOMS_QUEUE_URL"],
        serde_norway::from_str::<Value>("!If [HasRoomsSource, !Ref RoomsQueue, \"\"]").unwrap()
    );
    assert_eq!(
        number(&template["Parameters"]["RoomsDeliverConcurrency"]["Default"]),
        u64::from(marquee::config::DEFAULT_ROOMS_DELIVER_MAX_CONCURRENCY),
        "the local gateway's rooms workers are the template's default"
    );
    let parameter = &template["Parameters"]["DeliverConcurrency"];
    assert!(number(&parameter["MinValue"]) >= 2 && number(&parameter["MaxValue"]) <= 1000);
}

#[test]
fn the_local_gateways_deliver_has_the_templates_timeout() {
    let template = template();
    let timeout = number(&resource(&template, "DeliverFunction")["Properties"]["Timeout"]);
    assert_eq!(
        marquee_local::gateway::backend::DELIVER_TIMEOUT.as_secs(),
        timeout
    );
}

#[test]
fn the_work_queues_outlast_a_deliver_invocation_and_dead_letter_what_keeps_failing() {
    let template = template();
    let timeout = number(&resource(&template, "DeliverFunction")["Properties"]["Timeout"]);
    for name in ["WorkQueue", "RoomsQueue"] {
        let queue = resource(&template, name);
        assert_eq!(queue["Type"].as_str(), Some("AWS::SQS::Queue"));
        let visibility = number(&queue["Properties"]["VisibilityTimeout"]);
        assert!(
            visibility >= 6 * timeout,
            "{name}: VisibilityTimeout {visibility} s is under 6 x DeliverFunction's Timeout \
             {timeout} s"
        );

        let redrive = &queue["Properties"]["RedrivePolicy"];
        let dead_letters = intrinsic(&redrive["deadLetterTargetArn"], "GetAtt")
            .and_then(|arn| arn.strip_suffix(".Arn"))
            .unwrap();
        assert_eq!(
            resource(&template, dead_letters)["Type"].as_str(),
            Some("AWS::SQS::Queue")
        );
        assert_ne!(dead_letters, name);
        assert!((1..=10).contains(&number(&redrive["maxReceiveCount"])));
    }
}

#[test]
fn the_work_queues_take_exactly_the_message_size_the_code_sends_within() {
    let template = template();
    for name in [
        "WorkQueue",
        "WorkDeadLetterQueue",
        "RoomsQueue",
        "RoomsDeadLetterQueue",
    ] {
        let size = &resource(&template, name)["Properties"]["MaximumMessageSize"];
        assert_eq!(
            usize::try_from(number(size)).unwrap(),
            marquee::queue::MESSAGE_MAX_BYTES,
            "{name}'s MaximumMessageSize"
        );
    }
    // A work item's largest part, its frame, leaves room for the rest in one message.
    const { assert!(marquee::wire::MAX_OUTBOUND_BYTES * 2 <= marquee::queue::MESSAGE_MAX_BYTES) };
}

/// API Gateway's integration timeout for WebSocket routes: 29 s, fixed.
const INTEGRATION_TIMEOUT_SECONDS: u64 = 29;

#[test]
fn every_route_function_answers_within_api_gateways_integration_timeout() {
    let template = template();
    for name in ["ConnectFunction", "DisconnectFunction", "SubscribeFunction"] {
        let timeout = match template["Resources"][name]["Properties"].get("Timeout") {
            Some(timeout) => number(timeout),
            None => number(&template["Globals"]["Function"]["Timeout"]),
        };
        assert!(
            timeout < INTEGRATION_TIMEOUT_SECONDS,
            "{name}'s Timeout {timeout} s is not under API Gateway's {INTEGRATION_TIMEOUT_SECONDS} s"
        );
    }
}

#[test]
fn the_table_uses_the_free_dynamodb_owned_key() {
    let template = template();
    let table = &resource(&template, "Table")["Properties"];
    let sse = table.get("SSESpecification");
    assert!(
        sse.is_none_or(|sse| sse
            .get("SSEEnabled")
            .is_none_or(|on| on.as_bool() == Some(false))),
        "SSEEnabled: true bills KMS requests for the AWS managed key: {sse:?}"
    );
}

/// API Gateway's default quota of new WebSocket connections per second, per account and Region.
const ACCOUNT_NEW_CONNECTIONS_PER_SECOND: u64 = 500;
/// API Gateway's default throttle per account and Region, in the Regions with the lower one.
const LOWEST_ACCOUNT_REQUESTS_PER_SECOND: u64 = 2_500;
/// ... and elsewhere.
const ACCOUNT_REQUESTS_PER_SECOND: u64 = 10_000;

#[test]
fn the_connect_and_fan_out_defaults_stay_within_the_accounts_default_quotas() {
    let template = template();
    let parameters = &template["Parameters"];
    for name in ["ConnectRateLimit", "ConnectBurstLimit"] {
        let default = number(&parameters[name]["Default"]);
        assert!(
            default <= ACCOUNT_NEW_CONNECTIONS_PER_SECOND,
            "{name} {default} above the account's {ACCOUNT_NEW_CONNECTIONS_PER_SECOND} new connections/s"
        );
    }
    let budget = &parameters["FanoutBudget"];
    assert_eq!(number(&budget["Default"]), 0, "0: sized from the Region");
    assert!(number(&budget["MaxValue"]) <= ACCOUNT_REQUESTS_PER_SECOND);
    // The Region's default is half its quota: 5,000, or 1,250 in the LowQuotaRegion ones.
    let deliver = resource(&template, "DeliverFunction");
    let choice = tagged(
        &deliver["Properties"]["Environment"]["Variables"]["FANOUT_BUDGET"],
        "If",
    )
    .unwrap();
    let by_region = tagged(&choice[1], "If").unwrap();
    assert_eq!(by_region[0].as_str(), Some("LowQuotaRegion"));
    assert_eq!(
        number(&by_region[1]),
        LOWEST_ACCOUNT_REQUESTS_PER_SECOND / 2
    );
    assert_eq!(number(&by_region[2]), ACCOUNT_REQUESTS_PER_SECOND / 2);
    let mut listed = BTreeSet::new();
    for group in tagged(&template["Conditions"]["LowQuotaRegion"], "Or")
        .and_then(Value::as_sequence)
        .unwrap()
    {
        for equals in tagged(group, "Or").and_then(Value::as_sequence).unwrap() {
            let pair = tagged(equals, "Equals").unwrap();
            assert_eq!(intrinsic(&pair[0], "Ref"), Some("AWS::Region"));
            listed.insert(pair[1].as_str().unwrap().to_owned());
        }
    }
    // The Regions with the lower quota are documented where an operator looks.
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let decisions = std::fs::read_to_string(workspace().join("docs/decisions.md")).unwrap();
    let low = LOWEST_ACCOUNT_REQUESTS_PER_SECOND / 2;
    for region in [
        "af-south-1",
        "eu-south-1",
        "ap-southeast-3",
        "me-central-1",
        "ap-south-2",
        "ap-southeast-4",
        "eu-south-2",
        "eu-central-2",
        "il-central-1",
        "ca-west-1",
        "ap-southeast-5",
        "ap-southeast-7",
        "mx-central-1",
    ] {
        for (file, text) in [("README.md", &readme), ("docs/decisions.md", &decisions)] {
            assert!(text.contains(region), "{file} does not name {region}");
        }
        assert!(
            listed.remove(region),
            "LowQuotaRegion does not name {region}"
        );
    }
    assert!(listed.is_empty(), "LowQuotaRegion names more: {listed:?}");
    assert!(
        readme.contains(&format!("{}", low)) || readme.contains("1,250"),
        "README gives no FanoutBudget for those Regions"
    );
}

#[test]
fn incomplete_reports_are_alarmed_and_fanout_completed_keeps_the_on_sale_source() {
    let template = template();
    let alarms: Vec<Value> = resources_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|alarm| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some(marquee::metrics::NAMESPACE)
                && p["MetricName"].as_str() == Some(marquee::metrics::INCOMPLETE_REPORTS)
        })
        .collect();
    assert_eq!(alarms.len(), 1, "one alarm on IncompleteReports");
    let p = &alarms[0]["Properties"];
    let dimensions = p["Dimensions"].as_sequence().unwrap();
    assert_eq!(
        (
            dimensions.len(),
            dimensions[0]["Name"].as_str(),
            dimensions[0]["Value"].as_str()
        ),
        (1, Some("Function"), Some("deliver")),
        "the EMF dimensions deliver emits"
    );
    assert_eq!(number(&p["Threshold"]), 0);
    assert_eq!(
        template["Parameters"]["EventSource"]["Default"].as_str(),
        Some(marquee::report::DEFAULT_EVENT_SOURCE),
        "FanoutCompleted's default source is the on-sale events'"
    );
    assert_eq!(
        template["Parameters"]["ReportEventBus"]["Default"].as_str(),
        Some(marquee::config::ReportTarget::default().bus.as_str())
    );
    for rule in resources_of_type(&template, "AWS::Events::Rule") {
        let types = &rule["Properties"]["EventPattern"]["detail-type"];
        let listed = format!("{types:?}");
        assert!(
            !listed.contains(marquee::report::FANOUT_COMPLETED_DETAIL_TYPE),
            "no rule of ours may match FanoutCompleted: {listed}"
        );
    }
}

#[test]
fn deliver_failures_are_alarmed_at_once_not_when_they_reach_the_dead_letter_queue() {
    let template = template();
    let failures: Vec<Value> = resources_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|alarm| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some(marquee::metrics::NAMESPACE)
                && p["MetricName"].as_str() == Some(marquee::metrics::WORK_ITEM_FAILURES)
        })
        .collect();
    assert_eq!(failures.len(), 1, "one alarm on deliver's WorkItemFailures");
    let p = &failures[0]["Properties"];
    let dimensions = p["Dimensions"].as_sequence().unwrap();
    assert_eq!(dimensions.len(), 1);
    assert_eq!(
        (
            dimensions[0]["Name"].as_str(),
            dimensions[0]["Value"].as_str()
        ),
        (Some("Function"), Some("deliver")),
        "the EMF dimensions deliver emits"
    );
    assert_eq!(number(&p["Threshold"]), 0);
    assert!(number(&p["Period"]) * number(&p["EvaluationPeriods"]) <= 300);

    let age: Vec<Value> = resources_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|alarm| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some("AWS/SQS")
                && p["MetricName"].as_str() == Some("ApproximateAgeOfOldestMessage")
                && intrinsic(&p["Dimensions"][0]["Value"], "GetAtt") == Some("WorkQueue.QueueName")
        })
        .collect();
    assert_eq!(age.len(), 1, "one alarm on the work queue's oldest item");
    assert_eq!(
        intrinsic(&age[0]["Properties"]["Threshold"], "Ref"),
        Some("FanoutLagAlarmSeconds")
    );
}

#[test]
fn every_function_logs_to_its_own_log_group_with_a_retention() {
    let template = template();
    let retention = &template["Parameters"]["LogRetentionDays"];
    assert_eq!(number(&retention["Default"]), 30);
    let functions = named_resources_of_type(&template, "AWS::Serverless::Function");
    assert_eq!(functions.len(), function_binaries().len());
    let mut groups = BTreeSet::new();
    for (name, function) in &functions {
        // Referenced from LoggingConfig, the group exists before the function can be
        // invoked, so Lambda never creates an unbounded group of its own first.
        let group = intrinsic(&function["Properties"]["LoggingConfig"]["LogGroup"], "Ref")
            .unwrap_or_else(|| panic!("{name} has no LoggingConfig.LogGroup: !Ref <group>"));
        let resource = resource(&template, group);
        assert_eq!(
            resource["Type"].as_str(),
            Some("AWS::Logs::LogGroup"),
            "{name}"
        );
        assert_eq!(
            intrinsic(&resource["Properties"]["RetentionInDays"], "Ref"),
            Some("LogRetentionDays"),
            "{name}'s log group keeps logs (user ids) forever"
        );
        assert!(groups.insert(group.to_owned()), "{name} shares {group}");
    }
    // The log format and level stay in Globals, merged with each function's LogGroup.
    let globals = &template["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(globals["LogFormat"].as_str(), Some("JSON"));
}

#[test]
fn no_log_level_lets_raw_events_or_tokens_through_nor_drops_metric_lines() {
    let template = template();
    let parameter = &template["Parameters"]["LogLevel"];
    let allowed: Vec<&str> = strings(&parameter["AllowedValues"]);
    assert!(!allowed.is_empty());
    assert!(
        !allowed.iter().any(|l| l.eq_ignore_ascii_case("trace")),
        "at trace lambda_runtime logs raw events, $connect's token included: {allowed:?}"
    );
    assert!(allowed.contains(&parameter["Default"].as_str().unwrap()));
    let levels = template["Mappings"]["LogLevels"].as_mapping().unwrap();
    for level in &allowed {
        let lambda = levels
            .get(*level)
            .unwrap_or_else(|| panic!("LogLevels has no {level}"))["Lambda"]
            .as_str()
            .unwrap();
        // EMF lines carry no "level"; Lambda files them under INFO and would drop them
        // (and every metric the alarms watch) at WARN or ERROR.
        assert!(
            ["DEBUG", "INFO"].contains(&lambda),
            "LogLevel {level} sets Lambda's ApplicationLogLevel to {lambda}"
        );
    }
    assert!(
        levels
            .keys()
            .all(|k| allowed.contains(&k.as_str().unwrap()))
    );
}

#[test]
fn the_stage_deploys_every_route_change_by_itself() {
    let template = template();
    assert!(
        resources_of_type(&template, "AWS::ApiGatewayV2::Deployment").is_empty(),
        "a Deployment resource is a snapshot CloudFormation never takes again"
    );
    let stages = named_resources_of_type(&template, "AWS::ApiGatewayV2::Stage");
    assert_eq!(stages.len(), 1);
    let stage = &stages[0].1;
    assert_eq!(stage["Properties"]["AutoDeploy"].as_bool(), Some(true));
    assert!(stage["Properties"].get("DeploymentId").is_none());
    let depends_on: BTreeSet<&str> = strings(&stage["DependsOn"]).into_iter().collect();
    for (name, _) in named_resources_of_type(&template, "AWS::ApiGatewayV2::Route") {
        assert!(
            depends_on.contains(name.as_str()),
            "the stage's first deployment misses {name}"
        );
    }
}

#[test]
fn connect_has_its_own_lower_throttle_and_every_burst_covers_its_rate() {
    let template = template();
    let settings = &resource(&template, "Stage")["Properties"];
    let default = &settings["DefaultRouteSettings"];
    let (default_burst, default_rate) = (
        number(&default["ThrottlingBurstLimit"]),
        number(&default["ThrottlingRateLimit"]),
    );
    assert!(default_burst >= default_rate);
    let connect = &settings["RouteSettings"]["$connect"];
    assert_eq!(
        intrinsic(&connect["ThrottlingRateLimit"], "Ref"),
        Some("ConnectRateLimit")
    );
    assert_eq!(
        intrinsic(&connect["ThrottlingBurstLimit"], "Ref"),
        Some("ConnectBurstLimit")
    );
    let parameters = &template["Parameters"];
    let rate = number(&parameters["ConnectRateLimit"]["Default"]);
    let burst = number(&parameters["ConnectBurstLimit"]["Default"]);
    assert!(
        burst >= rate,
        "$connect burst {burst} under its rate {rate}"
    );
    assert!(
        rate < default_rate,
        "$connect is not limited below the other routes"
    );
}

/// Every queue something dead-letters into: a queue's redrive target, an EventBridge
/// target's `DeadLetterConfig`, a function's `OnFailure` destination.
fn dead_letter_queues(template: &Value) -> BTreeSet<String> {
    let arn_of = |value: &Value| {
        intrinsic(value, "GetAtt")
            .and_then(|arn| arn.strip_suffix(".Arn"))
            .map(str::to_owned)
    };
    let mut queues = BTreeSet::new();
    for queue in resources_of_type(template, "AWS::SQS::Queue") {
        queues.extend(arn_of(
            &queue["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
        ));
    }
    for rule in resources_of_type(template, "AWS::Events::Rule") {
        for target in rule["Properties"]["Targets"].as_sequence().unwrap() {
            queues.extend(arn_of(&target["DeadLetterConfig"]["Arn"]));
        }
    }
    for function in resources_of_type(template, "AWS::Serverless::Function") {
        let on_failure =
            &function["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        if on_failure["Type"].as_str() == Some("SQS") {
            queues.extend(arn_of(&on_failure["Destination"]));
        }
    }
    queues
}

#[test]
fn every_dead_letter_queue_has_a_depth_alarm_and_one_message_format() {
    let template = template();
    let dead_letters = dead_letter_queues(&template);
    assert!(dead_letters.len() >= 3, "{dead_letters:?}");
    // Every queue is either worked by an event source or a dead-letter queue, so a queue
    // added later is one or the other, and alarmed if it is the latter.
    let worked: BTreeSet<String> = resources_of_type(&template, "AWS::Lambda::EventSourceMapping")
        .iter()
        .filter_map(|m| intrinsic(&m["Properties"]["EventSourceArn"], "GetAtt"))
        .filter_map(|arn| arn.strip_suffix(".Arn"))
        .map(str::to_owned)
        .collect();
    for (name, _) in named_resources_of_type(&template, "AWS::SQS::Queue") {
        assert!(
            dead_letters.contains(&name) ^ worked.contains(&name),
            "{name} is neither a dead-letter queue nor worked by an event source (or both)"
        );
    }

    // EventBridge's dead letters are events; Lambda's OnFailure records are invocation
    // records: never the same queue.
    let rule_dlqs: Vec<String> = resources_of_type(&template, "AWS::Events::Rule")
        .iter()
        .flat_map(|r| r["Properties"]["Targets"].as_sequence().unwrap().clone())
        .filter_map(|t| intrinsic(&t["DeadLetterConfig"]["Arn"], "GetAtt").map(str::to_owned))
        .collect();
    let notify = &resource(&template, "NotifyFunction")["Properties"];
    let on_failure = intrinsic(
        &notify["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"],
        "GetAtt",
    )
    .unwrap();
    assert!(!rule_dlqs.is_empty());
    assert!(
        rule_dlqs.iter().all(|q| q != on_failure),
        "two message formats in {on_failure}"
    );

    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    for queue in &dead_letters {
        let alarmed = alarms.iter().any(|alarm| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some("AWS/SQS")
                && p["MetricName"].as_str() == Some("ApproximateNumberOfMessagesVisible")
                && p["Dimensions"].as_sequence().is_some_and(|d| {
                    d.iter().any(|d| {
                        d["Name"].as_str() == Some("QueueName")
                            && intrinsic(&d["Value"], "GetAtt")
                                == Some(format!("{queue}.QueueName").as_str())
                    })
                })
                && p["ComparisonOperator"].as_str() == Some("GreaterThanThreshold")
                && p["Threshold"].as_u64() == Some(0)
        });
        assert!(alarmed, "no depth > 0 alarm on dead-letter queue {queue}");
    }
}

/// The alarms on `metric` in `namespace` whose dimension `name` is `!Ref value`.
fn alarms_on(template: &Value, namespace: &str, metric: &str, value: &str) -> Vec<Value> {
    resources_of_type(template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|alarm| {
            let p = &alarm["Properties"];
            p["Namespace"].as_str() == Some(namespace)
                && p["MetricName"].as_str() == Some(metric)
                && p["Dimensions"].as_sequence().is_some_and(|d| {
                    d.iter()
                        .any(|d| intrinsic(&d["Value"], "Ref") == Some(value))
                })
        })
        .collect()
}

#[test]
fn every_function_has_error_and_throttle_alarms_and_fan_out_alarms_before_timeouts() {
    let template = template();
    for (name, _) in named_resources_of_type(&template, "AWS::Serverless::Function") {
        for metric in ["Errors", "Throttles"] {
            assert_eq!(
                alarms_on(&template, "AWS/Lambda", metric, &name).len(),
                1,
                "{name}: one {metric} alarm"
            );
        }
    }
    for name in ["NotifyFunction", "DeliverFunction"] {
        let timeout_ms = number(&resource(&template, name)["Properties"]["Timeout"]) * 1000;
        let alarms = alarms_on(&template, "AWS/Lambda", "Duration", name);
        assert_eq!(alarms.len(), 1, "{name}: one Duration alarm");
        let threshold = number(&alarms[0]["Properties"]["Threshold"]);
        assert_eq!(
            threshold,
            timeout_ms * 8 / 10,
            "{name}'s Duration alarm is not at 80% of its Timeout"
        );
    }
    // Fan-out lag p99, per function, against the parameter.
    let lag: Vec<Value> = resources_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|a| {
            a["Properties"]["Metrics"].as_sequence().is_some_and(|m| {
                m.iter().any(|m| {
                    m["MetricStat"]["Metric"]["MetricName"].as_str() == Some("FanoutLag")
                        && m["MetricStat"]["Stat"].as_str() == Some("p99")
                })
            })
        })
        .collect();
    let functions: BTreeSet<&str> = lag
        .iter()
        .flat_map(|a| a["Properties"]["Metrics"].as_sequence().unwrap().iter())
        .filter_map(|m| m["MetricStat"]["Metric"]["Dimensions"].as_sequence())
        .flatten()
        .filter(|d| d["Name"].as_str() == Some("Function"))
        .filter_map(|d| d["Value"].as_str())
        .collect();
    assert_eq!(functions, BTreeSet::from(["notify", "deliver"]));
    for alarm in &lag {
        assert_eq!(
            intrinsic(&alarm["Properties"]["Threshold"], "Ref"),
            Some("FanoutLagAlarmSeconds")
        );
    }
}

#[test]
fn every_alarm_notifies_the_topic_only_when_there_is_one() {
    let template = template();
    let topic = resource(&template, "AlarmTopic");
    assert_eq!(topic["Type"].as_str(), Some("AWS::SNS::Topic"));
    assert_eq!(topic["Condition"].as_str(), Some("HasAlarmTopic"));
    assert_eq!(
        template["Parameters"]["AlarmEmail"]["Default"].as_str(),
        Some(""),
        "no e-mail, no topic, by default"
    );
    let alarms = named_resources_of_type(&template, "AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 10);
    for (name, alarm) in &alarms {
        let p = &alarm["Properties"];
        assert!(p.get("InsufficientDataActions").is_none(), "{name}");
        for actions in ["AlarmActions", "OKActions"] {
            let choice = tagged(&p[actions], "If")
                .and_then(Value::as_sequence)
                .unwrap_or_else(|| panic!("{name}.{actions} is not !If [HasAlarmTopic, ...]"));
            assert_eq!(choice.len(), 3, "{name}.{actions}");
            assert_eq!(
                choice[0].as_str(),
                Some("HasAlarmTopic"),
                "{name}.{actions}"
            );
            let targets = choice[1].as_sequence().unwrap();
            assert_eq!(targets.len(), 1, "{name}.{actions}");
            assert_eq!(intrinsic(&targets[0], "Ref"), Some("AlarmTopic"));
            assert_eq!(intrinsic(&choice[2], "Ref"), Some("AWS::NoValue"));
        }
        assert!(
            ["notBreaching", "ignore", "breaching", "missing"]
                .contains(&p["TreatMissingData"].as_str().unwrap_or("")),
            "{name}: say how missing data counts"
        );
    }
}

#[test]
fn the_dashboard_body_is_json_and_shows_the_fan_out_lag() {
    let template = template();
    let dashboards = resources_of_type(&template, "AWS::CloudWatch::Dashboard");
    assert_eq!(dashboards.len(), 1);
    let body = intrinsic(&dashboards[0]["Properties"]["DashboardBody"], "Sub")
        .expect("DashboardBody: !Sub | ...");
    // What CloudFormation substitutes: every ${...}, here a dummy that is valid both
    // inside a JSON string and as a bare number.
    let mut substituted = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        substituted.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("unclosed ${") + start;
        let name = &rest[start + 2..end];
        assert!(
            name.starts_with("AWS::")
                || template["Parameters"].get(name).is_some()
                || template["Resources"]
                    .get(name.split('.').next().unwrap())
                    .is_some(),
            "${{{name}}} names no parameter or resource"
        );
        substituted.push('1');
        rest = &rest[end + 1..];
    }
    substituted.push_str(rest);
    let dashboard: serde_json::Value = serde_json::from_str(&substituted)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}\n{substituted}"));
    let widgets = dashboard["widgets"].as_array().unwrap();
    assert!(!widgets.is_empty());
    for widget in widgets {
        for key in ["type", "x", "y", "width", "height", "properties"] {
            assert!(widget.get(key).is_some(), "a widget without {key}");
        }
    }
    for metric in [
        "FanoutLag",
        "ConnectCount",
        "MessageCount",
        "Delivered",
        "Failed",
        "Gone",
    ] {
        assert!(
            body.contains(&format!("\"{metric}\"")),
            "the dashboard misses {metric}"
        );
    }
    for queue in dead_letter_queues(&template) {
        assert!(
            body.contains(&format!("${{{queue}.QueueName}}")),
            "the dashboard misses dead-letter queue {queue}"
        );
    }
    for (name, _) in named_resources_of_type(&template, "AWS::CloudWatch::Alarm") {
        assert!(
            body.contains(&format!("${{{name}.Arn}}")),
            "the dashboard's alarm widget misses {name}"
        );
    }
}

#[test]
fn every_dynamodb_write_is_narrowed_by_leading_keys() {
    const WRITES: [&str; 4] = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ];
    let template = template();
    let mut writes = 0;
    for (name, function) in named_resources_of_type(&template, "AWS::Serverless::Function") {
        let Some(policies) = function["Properties"]["Policies"].as_sequence() else {
            continue;
        };
        for statement in policies
            .iter()
            .filter_map(|p| p["Statement"].as_sequence())
            .flatten()
        {
            let actions = strings(&statement["Action"]);
            if !actions.iter().any(|a| WRITES.contains(a)) {
                continue;
            }
            writes += 1;
            let keys =
                strings(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
            assert!(
                !keys.is_empty()
                    && keys.iter().all(|k| {
                        [
                            "CONN#*", "EVENT#*", "ARTIST#*", "BUDGET#*", "USER#*", "STATS#*",
                        ]
                        .contains(k)
                    }),
                "{name} may write {actions:?} to any partition: {keys:?}"
            );
            assert!(
                actions.iter().all(|a| a.starts_with("dynamodb:")),
                "{name}: keep the LeadingKeys statement to DynamoDB actions"
            );
        }
    }
    assert!(writes >= 5);
}

/// The variables `template.yaml` gives `function`: Globals' and its own, with their values.
fn declared_environment(template: &Value, function: Function) -> Vec<(String, Value)> {
    let globals = &template["Globals"]["Function"]["Environment"]["Variables"];
    let own = &resource(template, function.resource())["Properties"]["Environment"]["Variables"];
    [globals, own]
        .into_iter()
        .filter_map(Value::as_mapping)
        .flatten()
        .map(|(name, value)| (name.as_str().unwrap().to_owned(), value.clone()))
        .collect()
}

#[test]
fn every_function_declares_exactly_the_variables_its_code_reads() {
    let template = template();
    for function in Function::ALL {
        let declared = declared_environment(&template, function);
        let names: Vec<&str> = declared.iter().map(|(name, _)| name.as_str()).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(
            unique.len(),
            names.len(),
            "{}: a variable declared in Globals and again by the function",
            function.resource()
        );
        assert_eq!(
            unique,
            function.reads().into_iter().collect::<BTreeSet<_>>(),
            "{}: declared (left) and read by marquee-{} (right)",
            function.resource(),
            function.name()
        );
    }
}

#[test]
fn local_only_variables_are_declared_empty_so_only_sam_local_sets_them() {
    let template = template();
    for function in Function::ALL {
        for (name, value) in declared_environment(&template, function) {
            if LOCAL_ONLY.contains(&name.as_str()) {
                assert_eq!(
                    value.as_str(),
                    Some(""),
                    "{}: {name} must be empty in AWS",
                    function.resource()
                );
            }
            assert_ne!(
                name,
                "AWS_SAM_LOCAL",
                "{}: it would let local-only variables through in AWS",
                function.resource()
            );
        }
    }
}

/// The README's configuration table: each variable's "used by" column, `all` spelled out.
fn readme_configuration() -> Vec<(String, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("the README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let used_by = cells.get(2)?;
            let functions = if *used_by == "all" {
                Function::ALL.iter().map(|f| f.name().to_owned()).collect()
            } else {
                used_by.split(',').map(|f| f.trim().to_owned()).collect()
            };
            Some((name.to_owned(), functions))
        })
        .collect()
}

#[test]
fn the_readme_lists_every_variable_with_the_functions_that_read_it() {
    let listed = readme_configuration();
    let mut read: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for function in Function::ALL {
        for name in function.reads().into_iter().chain(PLATFORM.iter().copied()) {
            read.entry(name.to_owned())
                .or_default()
                .insert(function.name().to_owned());
        }
    }
    let listed_names: Vec<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        listed_names.iter().copied().collect::<BTreeSet<_>>(),
        read.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        "the README's table (left) and what the functions read (right)"
    );
    for (name, used_by) in listed {
        assert_eq!(used_by, read[&name], "README: who reads {name}");
    }
}

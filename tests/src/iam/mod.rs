//! The IAM check: every AWS request a function's code makes in the tests, held to that
//! function's policy in `template.yaml`.
//!
//! - **Recording** ([`record`]): the harness installs an observer on every SDK client built by
//!   `marquee::lambda::deps::sdk_config` (feature `test-support`). Each request made inside a
//!   function's work ([`Function::run`](marquee::function::Function::run), which every handler uses) becomes one or more
//!   [`Call`]s: what IAM authorises, which is not always the API operation (a transaction is
//!   authorised item by item, `SendMessageBatch` as `sqs:SendMessage`). They are appended to a
//!   file per test process under `MARQUEE_IAM_LOG`. Requests outside any function (a test
//!   creating its table or looking at items) are not the functions' and are not recorded.
//! - **Checking** ([`policy`]): `scripts/test` then runs the `iam-check` binary over the files.
//!   It binds each call to the resource the function's environment points it at (the table
//!   of `TABLE_NAME`, the queue of `WORK_QUEUE_URL`, ...), evaluates it against the function's
//!   statements (actions, resources, `dynamodb:LeadingKeys` conditions), fails on any call the
//!   template would deny, and lists the grants no call used.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, Once};

use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use marquee::function::Function;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod policy;
mod resolve;

/// The variable naming the folder the calls are written to (one file per test process).
pub const LOG_VARIABLE: &str = "MARQUEE_IAM_LOG";

/// How the tests name a rooms queue (`crate::fresh_rooms_queue`): a request to a queue named
/// so is bound to the function's `ROOMS_QUEUE_URL`, any other to its `WORK_QUEUE_URL`.
pub const ROOMS_QUEUE_PREFIX: &str = "rooms-";

/// What a call acts on, before it is bound to the template's resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The function's table (`TABLE_NAME`), or one of its indexes.
    Table {
        /// The index queried, if any.
        index: Option<String>,
    },
    /// The function's work queue (`WORK_QUEUE_URL`).
    Queue,
    /// Room messages' work queue (`ROOMS_QUEUE_URL`): a queue whose name starts with
    /// [`ROOMS_QUEUE_PREFIX`], as the tests name theirs.
    RoomsQueue,
    /// The function's token secret (`TOKEN_SECRET_ARN`).
    Secret,
    /// The event bus `FanoutCompleted` goes to (`REPORT_EVENT_BUS`).
    EventBus,
    /// A connection of the function's API stage (`WEBSOCKET_ENDPOINT`), through `method`.
    Connection {
        /// `POST`, `GET` or `DELETE`.
        method: String,
    },
    /// A request the check does not understand: always denied, so it gets looked at.
    Unknown {
        /// The request line.
        request: String,
    },
}

/// One request IAM evaluates: an action on a resource, with its condition keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Call {
    /// The template's resource of the function that made it (`SubscribeFunction`).
    pub function: String,
    /// The API operation sent (`TransactWriteItems`).
    pub operation: String,
    /// The IAM action authorised (`dynamodb:UpdateItem`).
    pub action: String,
    /// What it acts on.
    pub target: Target,
    /// `dynamodb:LeadingKeys`: the partition key values the request touches (DynamoDB only).
    pub leading_keys: BTreeSet<String>,
    /// The test that made it, when the test's thread is named for it.
    #[serde(default)]
    pub test: Option<String>,
}

/// Starts recording for this process (once; later calls do nothing). Panics with the fix when
/// `MARQUEE_IAM_LOG` is unset: the check is part of the suite, never skipped.
pub fn record() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = match std::env::var(LOG_VARIABLE) {
            Ok(dir) if !dir.trim().is_empty() => PathBuf::from(dir),
            _ => panic!(
                "{LOG_VARIABLE} is not set. The tests record every AWS call for the IAM check: \
                 run them with `scripts/test`, which sets it and runs the check."
            ),
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{}.jsonl", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let sink = Mutex::new(file);
        marquee::lambda::observe::install(Box::new(move |request, function| {
            let Some(function) = function else { return };
            let test = std::thread::current().name().map(str::to_owned);
            let mut lines = String::new();
            for mut call in calls(function, request) {
                call.test.clone_from(&test);
                if let Ok(line) = serde_json::to_string(&call) {
                    lines.push_str(&line);
                    lines.push('\n');
                }
            }
            // One write per request: lines from concurrent requests never interleave.
            if let Ok(mut file) = sink.lock() {
                let _ = file.write_all(lines.as_bytes());
            }
        }));
    });
}

/// The calls IAM authorises for one HTTP request of `function`.
#[must_use]
pub fn calls(function: Function, request: &HttpRequest) -> Vec<Call> {
    let body = request
        .body()
        .bytes()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .unwrap_or(Value::Null);
    let target = request.headers().get("x-amz-target").unwrap_or_default();
    let parts = match target.split_once('.') {
        Some(("DynamoDB_20120810", operation)) => dynamodb(operation, &body),
        Some(("AmazonSQS", operation)) => vec![sqs(operation, &body)],
        Some(("AWSEvents", operation)) => vec![Part::new(
            operation,
            format!("events:{operation}"),
            Target::EventBus,
        )],
        Some(("secretsmanager", operation)) => vec![Part::new(
            operation,
            format!("secretsmanager:{operation}"),
            Target::Secret,
        )],
        _ => vec![management(request.method(), request.uri())],
    };
    parts
        .into_iter()
        .map(|part| Call {
            function: function.resource().to_owned(),
            operation: part.operation,
            action: part.action,
            target: part.target,
            leading_keys: part.leading_keys,
            test: None,
        })
        .collect()
}

/// A call before it is given its function.
#[derive(Debug)]
struct Part {
    operation: String,
    action: String,
    target: Target,
    leading_keys: BTreeSet<String>,
}

impl Part {
    fn new(operation: &str, action: String, target: Target) -> Self {
        Self {
            operation: operation.to_owned(),
            action,
            target,
            leading_keys: BTreeSet::new(),
        }
    }

    fn keys(mut self, keys: impl IntoIterator<Item = String>) -> Self {
        self.leading_keys.extend(keys);
        self
    }
}

/// The partition key value of an item or key in DynamoDB's JSON (`{"pk": {"S": "CONN#a"}}`):
/// the one attribute the table's key schema names first, [`policy::PARTITION_KEYS`].
fn partition_key(item: &Value) -> Option<String> {
    policy::PARTITION_KEYS
        .iter()
        .find_map(|name| item.get(*name))
        .and_then(scalar)
}

/// The value of a typed attribute (`{"S": "x"}`, `{"N": "1"}`) as a string.
fn scalar(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    ["S", "N", "B"]
        .iter()
        .find_map(|t| object.get(*t).and_then(Value::as_str))
        .map(str::to_owned)
}

fn table(index: Option<&str>) -> Target {
    Target::Table {
        index: index.map(str::to_owned),
    }
}

/// DynamoDB: a transaction is authorised item by item under the item's own action
/// (`ConditionCheck` as `dynamodb:ConditionCheckItem`); batches under their own actions.
fn dynamodb(operation: &str, body: &Value) -> Vec<Part> {
    let action = |name: &str| format!("dynamodb:{name}");
    let index = body.get("IndexName").and_then(Value::as_str);
    match operation {
        "GetItem" | "UpdateItem" | "DeleteItem" => vec![
            Part::new(operation, action(operation), table(None))
                .keys(body.get("Key").and_then(partition_key)),
        ],
        "PutItem" => vec![
            Part::new(operation, action(operation), table(None))
                .keys(body.get("Item").and_then(partition_key)),
        ],
        "Query" => {
            vec![Part::new(operation, action(operation), table(index)).keys(query_partition(body))]
        }
        "TransactWriteItems" | "TransactGetItems" => body
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .flat_map(|item| item.iter())
            .map(|(kind, request)| {
                let (name, key) = match kind.as_str() {
                    "Put" => ("PutItem", request.get("Item")),
                    "Update" => ("UpdateItem", request.get("Key")),
                    "Delete" => ("DeleteItem", request.get("Key")),
                    "ConditionCheck" => ("ConditionCheckItem", request.get("Key")),
                    "Get" => ("GetItem", request.get("Key")),
                    other => (other, None),
                };
                Part::new(operation, action(name), table(None)).keys(key.and_then(partition_key))
            })
            .collect(),
        "BatchGetItem" | "BatchWriteItem" => body
            .get("RequestItems")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|tables| tables.values())
            .map(|requests| {
                let keys: Vec<String> = if operation == "BatchGetItem" {
                    requests
                        .get("Keys")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(partition_key)
                        .collect()
                } else {
                    requests
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|r| {
                            r.pointer("/PutRequest/Item")
                                .or_else(|| r.pointer("/DeleteRequest/Key"))
                        })
                        .filter_map(partition_key)
                        .collect()
                };
                Part::new(operation, action(operation), table(None)).keys(keys)
            })
            .collect(),
        // Scans, table management and anything else: the table itself, no leading keys.
        _ => vec![Part::new(operation, action(operation), table(index))],
    }
}

/// The partition key value a Query's key condition fixes (`#pk = :pk`, either side).
fn query_partition(body: &Value) -> Option<String> {
    let condition = body.get("KeyConditionExpression")?.as_str()?;
    let names = body.get("ExpressionAttributeNames");
    let values = body.get("ExpressionAttributeValues")?;
    let name_of = |token: &str| -> String {
        names
            .and_then(|n| n.get(token))
            .and_then(Value::as_str)
            .unwrap_or(token)
            .to_owned()
    };
    condition
        .split(|c: char| c.is_whitespace())
        .collect::<Vec<_>>()
        .split(|word| word.eq_ignore_ascii_case("AND"))
        .find_map(|clause| match clause {
            [left, "=", right] => {
                let (name, value) = if right.starts_with(':') {
                    (left, right)
                } else {
                    (right, left)
                };
                policy::PARTITION_KEYS
                    .contains(&name_of(name).as_str())
                    .then(|| values.get(*value).and_then(scalar))
                    .flatten()
            }
            _ => None,
        })
}

/// SQS: the batch operations are authorised as their single-message actions.
fn sqs(operation: &str, body: &Value) -> Part {
    let action = match operation {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    let queue = body["QueueUrl"]
        .as_str()
        .and_then(|url| url.rsplit('/').next())
        .unwrap_or_default();
    let target = if queue.starts_with(ROOMS_QUEUE_PREFIX) {
        Target::RoomsQueue
    } else {
        Target::Queue
    };
    Part::new(operation, format!("sqs:{action}"), target)
}

/// The Management API: `POST|GET|DELETE …/@connections/{id}` is `execute-api:ManageConnections`.
fn management(method: &str, uri: &str) -> Part {
    if uri.contains("/@connections/") {
        let operation = match method {
            "POST" => "PostToConnection",
            "GET" => "GetConnection",
            "DELETE" => "DeleteConnection",
            other => other,
        };
        Part::new(
            operation,
            "execute-api:ManageConnections".to_owned(),
            Target::Connection {
                method: method.to_owned(),
            },
        )
    } else {
        Part::new(
            "unknown",
            "unknown".to_owned(),
            Target::Unknown {
                request: format!("{method} {uri}"),
            },
        )
    }
}

/// Every call recorded in the `*.jsonl` files of `dir`.
///
/// # Errors
/// A file that cannot be read, or a line that is not a call.
pub fn read_calls(dir: &std::path::Path) -> Result<Vec<Call>, String> {
    let mut calls = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            calls.push(
                serde_json::from_str(line)
                    .map_err(|e| format!("{}: bad line {line:?}: {e}", path.display()))?,
            );
        }
    }
    Ok(calls)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_transaction_is_one_call_per_item_under_the_items_own_action() {
        let body = json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "CONN#a"}, "sk": {"S": "SUB#x"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "ARTIST#x"}, "sk": {"S": "COUNT#1"}}}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "CONN#a"}, "sk": {"S": "META"}}}},
        ]});
        let parts = dynamodb("TransactWriteItems", &body);
        let actions: Vec<(&str, Vec<&str>)> = parts
            .iter()
            .map(|p| {
                (
                    p.action.as_str(),
                    p.leading_keys.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            actions,
            [
                ("dynamodb:PutItem", vec!["CONN#a"]),
                ("dynamodb:UpdateItem", vec!["ARTIST#x"]),
                ("dynamodb:ConditionCheckItem", vec!["CONN#a"]),
            ]
        );
    }

    #[test]
    fn a_query_on_the_index_leads_with_the_index_partition_key() {
        let body = json!({
            "TableName": "t", "IndexName": "by-artist",
            "KeyConditionExpression": "#g = :g",
            "ExpressionAttributeNames": {"#g": "gsi1pk"},
            "ExpressionAttributeValues": {":g": {"S": "ARTIST#adele#3"}},
        });
        let parts = dynamodb("Query", &body);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].target, table(Some("by-artist")));
        assert_eq!(
            parts[0].leading_keys,
            BTreeSet::from(["ARTIST#adele#3".to_owned()])
        );
    }

    #[test]
    fn a_batch_get_leads_with_every_key_it_reads() {
        let body = json!({"RequestItems": {"t": {"Keys": [
            {"pk": {"S": "CONN#a"}, "sk": {"S": "META"}},
            {"pk": {"S": "CONN#b"}, "sk": {"S": "META"}},
        ]}}});
        let parts = dynamodb("BatchGetItem", &body);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].action, "dynamodb:BatchGetItem");
        assert_eq!(
            parts[0].leading_keys,
            BTreeSet::from(["CONN#a".to_owned(), "CONN#b".to_owned()])
        );
    }

    #[test]
    fn sqs_batches_are_authorised_as_their_single_message_actions() {
        let body = Value::Null;
        assert_eq!(sqs("SendMessageBatch", &body).action, "sqs:SendMessage");
        assert_eq!(sqs("DeleteMessageBatch", &body).action, "sqs:DeleteMessage");
        assert_eq!(sqs("ReceiveMessage", &body).action, "sqs:ReceiveMessage");
    }

    #[test]
    fn a_request_to_a_rooms_queue_is_bound_to_the_rooms_queue() {
        let rooms = serde_json::json!({"QueueUrl": "http://127.0.0.1:5000/123/rooms-1-2-3"});
        let work = serde_json::json!({"QueueUrl": "http://127.0.0.1:5000/123/q-1-2-3"});
        assert_eq!(sqs("SendMessageBatch", &rooms).target, Target::RoomsQueue);
        assert_eq!(sqs("SendMessageBatch", &work).target, Target::Queue);
    }

    #[test]
    fn a_management_api_request_is_manage_connections_by_method() {
        let part = management("DELETE", "http://127.0.0.1:9001/live/@connections/abc%3D");
        assert_eq!(part.action, "execute-api:ManageConnections");
        assert_eq!(
            part.target,
            Target::Connection {
                method: "DELETE".into()
            }
        );
        let unknown = management("GET", "http://127.0.0.1:9001/health");
        assert_eq!(unknown.action, "unknown");
    }
}

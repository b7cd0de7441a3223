//! Each function's IAM policy as `template.yaml` states it, and the evaluation of recorded
//! [`Call`]s against it.
//!
//! The template is read as SAM reads it for the parts that matter here: each
//! `AWS::Serverless::Function`'s inline `Policies` statements (`Effect`, `Action`,
//! `Resource`, `Condition`) and its `Environment` merged over `Globals`. Intrinsics are
//! resolved symbolically in one made-up account (`123456789012`, `us-east-1`): a resource's
//! name is its logical id, a parameter is its default. Anything the check does not model (a SAM
//! policy template, a managed policy, `NotAction`, an unknown condition operator or key) is an
//! error, never a silent allow.
//!
//! Evaluation is IAM's for identity policies: an explicit `Deny` wins, then any `Allow` that
//! matches the action, the resource and every condition; otherwise the call is denied.

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::Value;

use super::resolve::{Resolver, at};
use super::{Call, Target};
use marquee::schema::{GSI1PK, PK};

/// The partition key attributes of the table and of its index, the values of which are
/// `dynamodb:LeadingKeys` (the template test checks they are the template's key schema).
pub const PARTITION_KEYS: [&str; 2] = [PK, GSI1PK];

use super::resolve::{ACCOUNT, REGION};

/// One `Allow` or `Deny` statement of a function's policy, resolved.
#[derive(Debug, Clone)]
pub struct Statement {
    /// `true` for `Allow`.
    pub allow: bool,
    /// Action patterns (`dynamodb:PutItem`, `sqs:*`).
    pub actions: Vec<String>,
    /// Resource ARN patterns, resolved.
    pub resources: Vec<String>,
    /// `operator → key → values`.
    pub conditions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// One function's policy, and the resources its environment points it at.
#[derive(Debug, Clone)]
pub struct FunctionPolicy {
    /// The statements, in template order.
    pub statements: Vec<Statement>,
    /// Its environment, resolved (`TABLE_NAME` → `Table`).
    pub environment: BTreeMap<String, String>,
}

/// Every function's policy in a template.
#[derive(Debug, Clone)]
pub struct Policies {
    /// By the function's logical id.
    pub functions: BTreeMap<String, FunctionPolicy>,
    resources: BTreeMap<String, String>,
}

/// A grant: one action of one statement on one resource pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The function's logical id.
    pub function: String,
    /// The statement's position in its policy.
    pub statement: usize,
    /// The action pattern.
    pub action: String,
    /// The resource pattern.
    pub resource: String,
}

/// What the check decided about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by these grants.
    Allowed(Vec<Grant>),
    /// Denied: why, and the resource ARN the call was evaluated on (if it could be bound).
    Denied {
        /// The ARN evaluated, if the call could be bound to one.
        resource: Option<String>,
        /// Why.
        reason: String,
    },
}

impl Policies {
    /// Reads the policies of every function in `template` (YAML text).
    ///
    /// # Errors
    /// YAML that does not parse, or a part of a policy the check cannot model.
    pub fn from_template(template: &str) -> Result<Self, String> {
        let doc: Value = serde_norway::from_str(template).map_err(|e| e.to_string())?;
        Self::from_value(&doc)
    }

    /// Reads the policies of every function in a parsed template.
    ///
    /// # Errors
    /// A part of a policy the check cannot model.
    pub fn from_value(doc: &Value) -> Result<Self, String> {
        let resources: BTreeMap<String, String> = at(doc, &["Resources"])
            .and_then(Value::as_mapping)
            .ok_or("the template has no Resources")?
            .iter()
            .filter_map(|(name, r)| {
                Some((name.as_str()?.to_owned(), r["Type"].as_str()?.to_owned()))
            })
            .collect();
        let resolver = Resolver {
            doc,
            resources: &resources,
        };
        let globals = at(doc, &["Globals", "Function", "Environment", "Variables"])
            .and_then(Value::as_mapping);
        let mut functions = BTreeMap::new();
        for (name, kind) in &resources {
            if kind != "AWS::Serverless::Function" {
                continue;
            }
            let properties = at(doc, &["Resources", name, "Properties"])
                .ok_or_else(|| format!("{name} has no Properties"))?;
            let mut environment = BTreeMap::new();
            let own = at(properties, &["Environment", "Variables"]).and_then(Value::as_mapping);
            for (key, value) in globals.into_iter().chain(own).flatten() {
                let key = key.as_str().ok_or("a variable name is not a string")?;
                // A value the check cannot resolve is kept out: a call that needs it is denied.
                if let Ok(value) = resolver.resolve(value) {
                    environment.insert(key.to_owned(), value);
                }
            }
            let mut statements = Vec::new();
            let policies = at(properties, &["Policies"]).and_then(Value::as_sequence);
            for policy in policies.into_iter().flatten() {
                let Some(document) = policy.get("Statement") else {
                    return Err(format!(
                        "{name}: the IAM check models inline statements only, not {policy:?} \
                         (a SAM policy template or a managed policy): write it as statements"
                    ));
                };
                for statement in document.as_sequence().ok_or("Statement is not a list")? {
                    statements.push(resolver.statement(name, statement)?);
                }
            }
            functions.insert(
                name.clone(),
                FunctionPolicy {
                    statements,
                    environment,
                },
            );
        }
        Ok(Self {
            functions,
            resources,
        })
    }

    /// The ARN `call` acts on, bound through its function's environment.
    ///
    /// # Errors
    /// Why it cannot be bound (the function's environment does not point it at such a thing).
    pub fn bind(&self, call: &Call) -> Result<String, String> {
        let function = self
            .functions
            .get(&call.function)
            .ok_or_else(|| format!("no function {} in the template", call.function))?;
        let variable = |name: &str| {
            function.environment.get(name).cloned().ok_or_else(|| {
                format!(
                    "{} calls {} without {name} in its environment",
                    call.function, call.action
                )
            })
        };
        let arn =
            |service: &str, rest: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}");
        match &call.target {
            Target::Table { index } => {
                let table = variable("TABLE_NAME")?;
                Ok(match index {
                    Some(index) => arn("dynamodb", &format!("table/{table}/index/{index}")),
                    None => arn("dynamodb", &format!("table/{table}")),
                })
            }
            Target::Queue | Target::RoomsQueue => {
                let url = variable(match call.target {
                    Target::RoomsQueue => "ROOMS_QUEUE_URL",
                    _ => "WORK_QUEUE_URL",
                })?;
                let name = url.rsplit('/').next().unwrap_or_default();
                if name.is_empty() {
                    return Err(format!(
                        "{} calls {} on a queue its environment leaves empty",
                        call.function, call.action
                    ));
                }
                Ok(arn("sqs", name))
            }
            Target::Secret => variable("TOKEN_SECRET_ARN"),
            Target::EventBus => {
                // A name, or an ARN as it is; unset means the default bus.
                let bus = variable("REPORT_EVENT_BUS")?;
                Ok(if bus.starts_with("arn:") {
                    bus
                } else {
                    arn("events", &format!("event-bus/{bus}"))
                })
            }
            Target::Connection { method } => {
                // https://{api}.execute-api.{region}.{suffix}/{stage}
                let endpoint = variable("WEBSOCKET_ENDPOINT")?;
                let rest = endpoint.strip_prefix("https://").unwrap_or(&endpoint);
                let (host, stage) = rest.split_once('/').unwrap_or((rest, ""));
                let api = host.split('.').next().unwrap_or_default();
                Ok(arn(
                    "execute-api",
                    &format!("{api}/{stage}/{method}/@connections/CONNECTION"),
                ))
            }
            Target::Unknown { request } => Err(format!("an unknown request: {request}")),
        }
    }

    /// Evaluates one call.
    #[must_use]
    pub fn decide(&self, call: &Call) -> Decision {
        let Some(function) = self.functions.get(&call.function) else {
            return Decision::Denied {
                resource: None,
                reason: format!("no function {} in the template", call.function),
            };
        };
        let resource = match self.bind(call) {
            Ok(resource) => resource,
            Err(reason) => {
                return Decision::Denied {
                    resource: None,
                    reason,
                };
            }
        };
        let mut grants = Vec::new();
        for (n, statement) in function.statements.iter().enumerate() {
            let action = statement
                .actions
                .iter()
                .find(|a| like(a, &call.action, true));
            let target = statement
                .resources
                .iter()
                .find(|r| like(r, &resource, false));
            let (Some(action), Some(target)) = (action, target) else {
                continue;
            };
            match conditions_hold(&statement.conditions, call) {
                Err(reason) => {
                    return Decision::Denied {
                        resource: Some(resource),
                        reason,
                    };
                }
                Ok(false) => continue,
                Ok(true) if !statement.allow => {
                    return Decision::Denied {
                        resource: Some(resource),
                        reason: format!("explicitly denied by statement {n}"),
                    };
                }
                Ok(true) => grants.push(Grant {
                    function: call.function.clone(),
                    statement: n,
                    action: action.clone(),
                    resource: target.clone(),
                }),
            }
        }
        if grants.is_empty() {
            Decision::Denied {
                resource: Some(resource),
                reason: "no statement allows it".to_owned(),
            }
        } else {
            Decision::Allowed(grants)
        }
    }

    /// Every grant of every function: each action of each `Allow` on each resource.
    #[must_use]
    pub fn grants(&self) -> Vec<Grant> {
        let mut grants = Vec::new();
        for (function, policy) in &self.functions {
            for (n, statement) in policy
                .statements
                .iter()
                .enumerate()
                .filter(|(_, s)| s.allow)
            {
                for action in &statement.actions {
                    for resource in &statement.resources {
                        grants.push(Grant {
                            function: function.clone(),
                            statement: n,
                            action: action.clone(),
                            resource: resource.clone(),
                        });
                    }
                }
            }
        }
        grants
    }

    /// The template's resource types, by logical id.
    #[must_use]
    pub fn resource_types(&self) -> &BTreeMap<String, String> {
        &self.resources
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` any one. Actions match without regard
/// to case.
#[must_use]
pub fn like(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, v) = (fold(pattern), fold(value));
    // Iterative glob match with one backtrack point per `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < v.len() {
        match p.get(i) {
            Some('*') => {
                star = Some(i);
                mark = j;
                i += 1;
            }
            Some(c) if *c == '?' || Some(c) == v.get(j) => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some(s) => {
                    i = s + 1;
                    mark += 1;
                    j = mark;
                }
                None => return false,
            },
        }
    }
    p.get(i..)
        .is_some_and(|tail| tail.iter().all(|c| *c == '*'))
}

/// Whether every condition of a statement holds for `call`.
fn conditions_hold(
    conditions: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    call: &Call,
) -> Result<bool, String> {
    for (operator, keys) in conditions {
        let (set, test) = match operator.split_once(':') {
            Some((set @ ("ForAllValues" | "ForAnyValue"), test)) => (Some(set), test),
            _ => (None, operator.as_str()),
        };
        let matches: fn(&str, &str) -> bool = match test {
            "StringLike" => |p, v| like(p, v, false),
            "StringEquals" => |p, v| p == v,
            _ => {
                return Err(format!(
                    "the IAM check does not model the operator {operator}"
                ));
            }
        };
        for (key, patterns) in keys {
            let values: BTreeSet<&str> = match key.as_str() {
                "dynamodb:LeadingKeys" => call.leading_keys.iter().map(String::as_str).collect(),
                other => return Err(format!("the IAM check does not model the key {other}")),
            };
            let fits = |v: &&str| patterns.iter().any(|p| matches(p, v));
            let holds = match set {
                Some("ForAllValues") => values.iter().all(fits),
                Some(_) => values.iter().any(fits),
                // A single-valued operator: the key must be present, and every value fit.
                None => !values.is_empty() && values.iter().all(fits),
            };
            if !holds {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(like("CONN#*", "CONN#abc", false));
        assert!(!like("CONN#*", "ARTIST#abc", false));
        assert!(like("dynamodb:*", "dynamodb:Query", true));
        assert!(like("DynamoDB:query", "dynamodb:Query", true));
        assert!(!like("dynamodb:Get*", "dynamodb:BatchGetItem", true));
        assert!(like("a?c*", "abcdef", false));
        assert!(like(
            "*/POST/@connections/*",
            "Api/live/POST/@connections/CONNECTION",
            false
        ));
        assert!(!like(
            "*/GET/@connections/*",
            "Api/live/POST/@connections/CONNECTION",
            false
        ));
    }
}

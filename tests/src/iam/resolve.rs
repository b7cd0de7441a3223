//! The template's intrinsics resolved symbolically, in one made-up account (`123456789012`,
//! `us-east-1`): a resource's name is its logical id, a parameter is its default. What the IAM
//! check's policies and environments are read through ([`super::policy`]).

use std::collections::BTreeMap;

use serde_norway::Value;

use super::policy::Statement;

/// The made-up Region.
pub(super) const REGION: &str = "us-east-1";
/// The made-up account.
pub(super) const ACCOUNT: &str = "123456789012";

/// The value at `path` of mapping keys, if every step is there.
pub(super) fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |value, key| value.get(*key))
}

/// Resolves intrinsics in one made-up account.
pub(super) struct Resolver<'t> {
    pub(super) doc: &'t Value,
    pub(super) resources: &'t BTreeMap<String, String>,
}

impl Resolver<'_> {
    pub(super) fn statement(&self, function: &str, statement: &Value) -> Result<Statement, String> {
        for unsupported in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
            if statement.get(unsupported).is_some() {
                return Err(format!(
                    "{function}: the IAM check does not model {unsupported}"
                ));
            }
        }
        let allow = match at(statement, &["Effect"]).and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            other => return Err(format!("{function}: Effect {other:?}")),
        };
        let actions = self.list(at(statement, &["Action"]).unwrap_or(&Value::Null))?;
        let resources = self.list(at(statement, &["Resource"]).unwrap_or(&Value::Null))?;
        let mut conditions = BTreeMap::new();
        if let Some(block) = statement.get("Condition") {
            for (operator, keys) in block.as_mapping().ok_or("Condition is not a mapping")? {
                let operator = operator
                    .as_str()
                    .ok_or("a condition operator is not a string")?;
                let mut by_key = BTreeMap::new();
                for (key, values) in keys.as_mapping().ok_or("a condition is not a mapping")? {
                    let key = key.as_str().ok_or("a condition key is not a string")?;
                    by_key.insert(key.to_owned(), self.list(values)?);
                }
                conditions.insert(operator.to_owned(), by_key);
            }
        }
        if actions.is_empty() || resources.is_empty() {
            return Err(format!(
                "{function}: a statement without Action or Resource"
            ));
        }
        Ok(Statement {
            allow,
            actions,
            resources,
            conditions,
        })
    }

    fn list(&self, value: &Value) -> Result<Vec<String>, String> {
        match value {
            Value::Sequence(items) => items.iter().map(|v| self.resolve(v)).collect(),
            Value::Null => Ok(Vec::new()),
            other => Ok(vec![self.resolve(other)?]),
        }
    }

    pub(super) fn resolve(&self, value: &Value) -> Result<String, String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                let argument = &tagged.value;
                match tag.trim_start_matches('!') {
                    "Ref" => self.reference(argument.as_str().ok_or("!Ref takes a name")?),
                    "GetAtt" => {
                        let text = argument.as_str().ok_or("!GetAtt takes Name.Attribute")?;
                        let (name, attribute) =
                            text.split_once('.').ok_or("!GetAtt takes Name.Attribute")?;
                        self.attribute(name, attribute)
                    }
                    "Sub" => self.substitute(argument.as_str().ok_or("!Sub takes a string")?),
                    "If" => {
                        let (condition, then, otherwise) = match argument.as_sequence() {
                            Some(parts) => match parts.as_slice() {
                                [condition, then, otherwise] => (condition, then, otherwise),
                                _ => return Err("!If takes [condition, then, else]".to_owned()),
                            },
                            None => return Err("!If takes [condition, then, else]".to_owned()),
                        };
                        let name = condition.as_str().ok_or("!If names a condition")?;
                        if self.condition(name)? {
                            self.resolve(then)
                        } else {
                            self.resolve(otherwise)
                        }
                    }
                    other => Err(format!("the IAM check does not resolve !{other}")),
                }
            }
            other => Err(format!("the IAM check does not resolve {other:?}")),
        }
    }

    /// The template's condition `name`, at every parameter's default and this made-up Region.
    fn condition(&self, name: &str) -> Result<bool, String> {
        let body = at(self.doc, &["Conditions", name])
            .ok_or_else(|| format!("no condition {name} in the template"))?;
        self.holds(body)
    }

    fn holds(&self, value: &Value) -> Result<bool, String> {
        let Value::Tagged(tagged) = value else {
            return Err(format!("the IAM check does not evaluate {value:?}"));
        };
        let argument = &tagged.value;
        let parts = || {
            argument
                .as_sequence()
                .map(Vec::as_slice)
                .ok_or_else(|| format!("{} takes a list", tagged.tag))
        };
        match tagged.tag.to_string().trim_start_matches('!') {
            "Equals" => match parts()? {
                [a, b] => Ok(self.resolve(a)? == self.resolve(b)?),
                _ => Err("!Equals takes two values".to_owned()),
            },
            "Not" => match parts()? {
                [inner] => Ok(!self.holds(inner)?),
                _ => Err("!Not takes one condition".to_owned()),
            },
            "And" => parts()?
                .iter()
                .try_fold(true, |all, c| Ok(all && self.holds(c)?)),
            "Or" => parts()?
                .iter()
                .try_fold(false, |any, c| Ok(any || self.holds(c)?)),
            "Condition" => self.condition(argument.as_str().ok_or("!Condition takes a name")?),
            other => Err(format!("the IAM check does not evaluate !{other}")),
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        match name {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT.to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_owned()),
            "AWS::StackName" => return Ok("marquee".to_owned()),
            _ => {}
        }
        if let Some(parameter) = at(self.doc, &["Parameters", name]) {
            return match at(parameter, &["Default"]) {
                None | Some(Value::Null) => Err(format!("parameter {name} has no default")),
                Some(default) => self.resolve(default),
            };
        }
        let kind = self
            .resources
            .get(name)
            .ok_or_else(|| format!("!Ref {name}: no such parameter or resource"))?;
        Ok(match kind.as_str() {
            "AWS::SQS::Queue" => format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"),
            "AWS::SecretsManager::Secret" => {
                format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}")
            }
            // A table's name, an API's id, a function's name: the logical id stands in.
            _ => name.to_owned(),
        })
    }

    fn attribute(&self, name: &str, attribute: &str) -> Result<String, String> {
        let kind = self
            .resources
            .get(name)
            .ok_or_else(|| format!("!GetAtt {name}: no such resource"))?;
        match (kind.as_str(), attribute) {
            ("AWS::DynamoDB::Table", "Arn") => {
                Ok(format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"))
            }
            ("AWS::SQS::Queue", "Arn") => Ok(format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")),
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => {
                Ok(format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"))
            }
            ("AWS::Events::Rule", "Arn") => {
                Ok(format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"))
            }
            _ => Err(format!(
                "the IAM check does not resolve !GetAtt {name}.{attribute}"
            )),
        }
    }

    fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let name = &after[..end];
            out.push_str(&match name.split_once('.') {
                Some((resource, attribute)) if !name.starts_with("AWS::") => {
                    self.attribute(resource, attribute)?
                }
                _ => self.reference(name)?,
            });
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

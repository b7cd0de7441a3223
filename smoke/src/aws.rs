//! The AWS side of the suite: configuration with timeouts, the stack's outputs, the token
//! secret, `PutEvents`, and a look at the table's artist index. Every error is summarised on
//! one line; nothing here logs or returns a secret.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use marquee::auth::Secret;
use marquee::domain::{ArtistKey, Shard, now_epoch_seconds};
use marquee::store::dynamo::DynamoStore;
use marquee::store::{Audience, Span};
use serde_json::json;

use crate::{AwsOptions, Timeouts, seconds};
use marquee::store::RoomStore;

/// The SDK configuration: the default credential and Region chains (or `--region` and
/// `--profile`), with the suite's timeouts on every call. With a `local` endpoint, the local
/// defaults instead (dummy credentials unless some are set, no instance metadata).
pub(crate) async fn load(
    options: &AwsOptions,
    local: bool,
    timeouts: &Timeouts,
) -> Result<SdkConfig, String> {
    let timeout_config = TimeoutConfig::builder()
        .connect_timeout(timeouts.connect)
        .operation_attempt_timeout(timeouts.aws)
        .operation_timeout(timeouts.aws)
        .build();
    if local {
        let sdk = Box::pin(marquee::lambda::deps::sdk_config(
            marquee::lambda::deps::Target::Local,
        ))
        .await;
        return Ok(sdk.into_builder().timeout_config(timeout_config).build());
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeout_config);
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = &options.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = tokio::time::timeout(timeouts.aws, Box::pin(loader.load()))
        .await
        .map_err(|_| {
            format!(
                "loading the AWS configuration took more than {}",
                seconds(timeouts.aws)
            )
        })?;
    if sdk.region().is_none() {
        return Err(
            "no AWS Region: pass --region, or set AWS_REGION or a region in your AWS profile"
                .into(),
        );
    }
    Ok(sdk)
}

/// The Region of `sdk`, for messages.
pub(crate) fn region(sdk: &SdkConfig) -> String {
    sdk.region()
        .map_or_else(|| "no Region".to_owned(), ToString::to_string)
}

/// What the suite needs from a deployed stack.
#[derive(Debug, Clone)]
pub(crate) struct StackInfo {
    pub(crate) status: String,
    pub(crate) url: String,
    pub(crate) bus: String,
    pub(crate) secret_arn: String,
    pub(crate) table: Option<String>,
    pub(crate) audience: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) detail_type: Option<String>,
}

/// Reads the stack's outputs (`WebSocketUrl`, `EventBusName`, `TokenSecretArn`, `TableName`)
/// and parameters (`TokenAudience`, `EventSource`, `EventDetailType`).
pub(crate) async fn describe_stack(
    sdk: &SdkConfig,
    name: &str,
    timeouts: &Timeouts,
) -> Result<StackInfo, String> {
    let client = aws_sdk_cloudformation::Client::new(sdk);
    let call = Box::pin(client.describe_stacks().stack_name(name).send());
    let out = tokio::time::timeout(timeouts.aws, call)
        .await
        .map_err(|_| format!("DescribeStacks: no answer within {}", seconds(timeouts.aws)))?
        .map_err(|e| {
            format!(
                "DescribeStacks {name} in {}: {}",
                region(sdk),
                sdk_error(&e)
            )
        })?;
    let stack = out
        .stacks()
        .first()
        .ok_or_else(|| format!("no stack {name} in {}", region(sdk)))?;
    stack_info(stack, name)
}

/// The suite's view of a described stack.
pub(crate) fn stack_info(
    stack: &aws_sdk_cloudformation::types::Stack,
    name: &str,
) -> Result<StackInfo, String> {
    let status = stack
        .stack_status()
        .map_or_else(|| "unknown status".to_owned(), |s| s.as_str().to_owned());
    let output = |key: &str| {
        stack
            .outputs()
            .iter()
            .find(|o| o.output_key() == Some(key))
            .and_then(|o| o.output_value())
            .map(str::to_owned)
    };
    let parameter = |key: &str| {
        stack
            .parameters()
            .iter()
            .find(|p| p.parameter_key() == Some(key))
            .and_then(|p| p.resolved_value().or(p.parameter_value()))
            .map(str::to_owned)
    };
    let require = |key: &str| {
        output(key).ok_or_else(|| {
            format!(
                "stack {name} ({status}) has no {key} output: is it a Marquee stack, and did \
                 its last deployment finish?"
            )
        })
    };
    Ok(StackInfo {
        url: require("WebSocketUrl")?,
        bus: require("EventBusName")?,
        secret_arn: require("TokenSecretArn")?,
        table: output("TableName"),
        audience: parameter("TokenAudience"),
        source: parameter("EventSource"),
        detail_type: parameter("EventDetailType"),
        status,
    })
}

/// The current version of the token secret (never printed).
pub(crate) async fn read_secret(
    sdk: &SdkConfig,
    secret_id: &str,
    timeouts: &Timeouts,
) -> Result<Secret, String> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let call = Box::pin(client.get_secret_value().secret_id(secret_id).send());
    let out = tokio::time::timeout(timeouts.aws, call)
        .await
        .map_err(|_| format!("GetSecretValue: no answer within {}", seconds(timeouts.aws)))?
        .map_err(|e| format!("GetSecretValue: {}", sdk_error(&e)))?;
    let bytes = out
        .secret_string()
        .map(|s| s.as_bytes().to_vec())
        .or_else(|| out.secret_binary().map(|b| b.as_ref().to_vec()))
        .ok_or("the secret has no value")?;
    Secret::new(bytes).map_err(|e| format!("the secret is not a usable key: {e}"))
}

/// Publishes `TicketsOnSale` events with the EventBridge SDK client.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    client: aws_sdk_eventbridge::Client,
    bus: Option<String>,
    source: String,
    detail_type: String,
    wait: Duration,
}

impl Publisher {
    /// A client for EventBridge itself (no `endpoint`) or an EventBridge-compatible endpoint
    /// (the local gateway).
    pub(crate) fn new(
        sdk: &SdkConfig,
        endpoint: Option<&str>,
        bus: Option<String>,
        rule: (String, String),
        timeouts: &Timeouts,
    ) -> Self {
        let mut config = aws_sdk_eventbridge::config::Builder::from(sdk);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_eventbridge::Client::from_conf(config.build()),
            bus,
            source: rule.0,
            detail_type: rule.1,
            wait: timeouts.aws,
        }
    }

    /// Puts one event per artist, in one call; returns their event ids in order.
    pub(crate) async fn publish(&self, artists: &[&str], run: &str) -> Result<Vec<String>, String> {
        let mut call = self.client.put_events();
        for artist in artists {
            let detail = json!({ "artist": artist, "venue": "Marquee smoke test", "smoke": run });
            call = call.entries(
                PutEventsRequestEntry::builder()
                    .source(&self.source)
                    .detail_type(&self.detail_type)
                    .detail(detail.to_string())
                    .set_event_bus_name(self.bus.clone())
                    .build(),
            );
        }
        let out = tokio::time::timeout(self.wait, Box::pin(call.send()))
            .await
            .map_err(|_| format!("PutEvents: no answer within {}", seconds(self.wait)))?
            .map_err(|e| format!("PutEvents: {}", sdk_error(&e)))?;
        if out.failed_entry_count() > 0 {
            let reasons: Vec<String> = out
                .entries()
                .iter()
                .filter_map(|e| {
                    e.error_code()
                        .map(|code| format!("{code}: {}", e.error_message().unwrap_or("")))
                })
                .collect();
            return Err(format!(
                "PutEvents rejected {} of {} entries ({})",
                out.failed_entry_count(),
                artists.len(),
                reasons.join("; ")
            ));
        }
        let ids: Option<Vec<String>> = out
            .entries()
            .iter()
            .map(|e| e.event_id().map(str::to_owned))
            .collect();
        match ids {
            Some(ids) if ids.len() == artists.len() => Ok(ids),
            _ => Err("PutEvents answered without an event id for every entry".into()),
        }
    }

    /// Where events go, for messages.
    pub(crate) fn describe(&self, endpoint: Option<&str>) -> String {
        let bus = self.bus.as_deref().unwrap_or("default");
        match endpoint {
            Some(endpoint) => format!("PutEvents to {endpoint}"),
            None => format!("PutEvents on bus {bus}"),
        }
    }
}

/// The stack's table, to see whether `$disconnect` removed a closed connection's
/// subscriptions (the artist index is what a fan-out reads).
#[derive(Debug, Clone)]
pub(crate) struct Index {
    store: DynamoStore,
    pub(crate) table: String,
}

/// Why the index could not be read.
pub(crate) enum IndexError {
    /// The caller may not read the table: not the stack's fault.
    NotPermitted(String),
    /// Anything else.
    Failed(String),
}

impl Index {
    pub(crate) fn new(sdk: &SdkConfig, table: String, endpoint: Option<&str>) -> Self {
        Self {
            store: marquee::lambda::deps::dynamo_store(sdk, &table, endpoint),
            table,
        }
    }

    /// Event `id`'s delivery report as `marquee-admin event <id>` reads it.
    pub(crate) async fn report(
        &self,
        id: &marquee::domain::EventId,
    ) -> Result<marquee::report::DeliveryReport, String> {
        marquee_admin::commands::event(&self.store, id, now_epoch_seconds())
            .await
            .map(|view| view.report)
            .map_err(|e| e.to_string())
    }

    /// How many live subscription records `artists` still have (every shard's first page).
    pub(crate) async fn subscriptions(&self, artists: &[ArtistKey]) -> Result<usize, IndexError> {
        let now = now_epoch_seconds();
        let mut count = 0;
        for artist in artists {
            let audience = Audience::Artist(artist.clone());
            for shard in Shard::all() {
                let page = self
                    .store
                    .subscribers(&audience, &Span::whole(shard), now, 100)
                    .await
                    .map_err(|e| {
                        let text = chain(&e);
                        if text.contains("AccessDenied") || text.contains("not authorized") {
                            IndexError::NotPermitted(text)
                        } else {
                            IndexError::Failed(text)
                        }
                    })?;
                count += page.connections.len();
            }
        }
        Ok(count)
    }
}

/// One line for an SDK error: the service's code and message, or the transport's reason.
pub(crate) fn sdk_error<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(service) = err.as_service_error() {
        return format!(
            "{}: {}",
            service.code().unwrap_or("service error"),
            service.message().unwrap_or("(no message)")
        );
    }
    let text = chain(err);
    if text.to_ascii_lowercase().contains("credential") {
        format!("no usable AWS credentials ({text})")
    } else {
        text
    }
}

/// An error and its sources on one line, repeated messages dropped (as `marquee-admin` prints
/// them).
pub(crate) use marquee_admin::chain;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use aws_sdk_cloudformation::types::{Output, Parameter, Stack, StackStatus};

    use super::*;

    fn output(key: &str, value: &str) -> Output {
        Output::builder()
            .output_key(key)
            .output_value(value)
            .build()
    }

    fn stack(outputs: Vec<Output>) -> Stack {
        Stack::builder()
            .stack_name("marquee")
            .stack_status(StackStatus::UpdateComplete)
            .set_outputs(Some(outputs))
            .parameters(
                Parameter::builder()
                    .parameter_key("TokenAudience")
                    .parameter_value("fans")
                    .build(),
            )
            .parameters(
                Parameter::builder()
                    .parameter_key("EventSource")
                    .parameter_value("acme.tickets")
                    .build(),
            )
            .build()
    }

    #[test]
    fn a_stack_gives_its_url_bus_secret_table_and_rule() {
        let info = stack_info(
            &stack(vec![
                output(
                    "WebSocketUrl",
                    "wss://abc.execute-api.eu-west-1.amazonaws.com/live",
                ),
                output("EventBusName", "default"),
                output(
                    "TokenSecretArn",
                    "arn:aws:secretsmanager:eu-west-1:1:secret:t",
                ),
                output("TableName", "marquee-Table-1"),
            ]),
            "marquee",
        )
        .unwrap();
        assert_eq!(
            info.url,
            "wss://abc.execute-api.eu-west-1.amazonaws.com/live"
        );
        assert_eq!(info.bus, "default");
        assert_eq!(
            info.secret_arn,
            "arn:aws:secretsmanager:eu-west-1:1:secret:t"
        );
        assert_eq!(info.table.as_deref(), Some("marquee-Table-1"));
        assert_eq!(info.audience.as_deref(), Some("fans"));
        assert_eq!(info.source.as_deref(), Some("acme.tickets"));
        assert_eq!(info.detail_type, None);
        assert_eq!(info.status, "UPDATE_COMPLETE");
    }

    #[test]
    fn a_stack_without_the_outputs_is_named_with_its_status() {
        let err = stack_info(
            &stack(vec![output("WebSocketUrl", "wss://x/live")]),
            "other",
        )
        .unwrap_err();
        assert!(
            err.contains("stack other (UPDATE_COMPLETE) has no EventBusName output"),
            "{err}"
        );
    }
}

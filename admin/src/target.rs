//! Where the commands act: a deployed stack, found by its outputs as `marquee-smoke` finds
//! them (`--stack`), or local stand-ins given one by one (`--endpoint` and `--table` for
//! DynamoDB Local, `--management-endpoint` for the local gateway, `--sqs-endpoint` and the
//! queue URLs for moto). A flag given beside `--stack` overrides that output.

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use marquee::lambda::deps::{self, Target};
use marquee::push::management::ManagementPush;
use marquee::store::dynamo::DynamoStore;

use crate::AdminError;
use crate::dlq::{DeadLetters, Kind};

/// What the command line says about where things are.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A CloudFormation stack whose outputs say the rest.
    pub stack: Option<String>,
    /// DynamoDB's endpoint (DynamoDB Local's URL).
    pub endpoint: Option<String>,
    /// The table (default: the stack's `TableName`).
    pub table: Option<String>,
    /// The Management API (default: the stack's `ManagementEndpoint`).
    pub management_endpoint: Option<String>,
    /// An SQS-compatible server's URL.
    pub sqs_endpoint: Option<String>,
    /// The dead-letter queues' URLs (default: the stack's outputs).
    pub queues: BTreeMap<Kind, String>,
    /// An EventBridge-compatible endpoint for re-driven events (the local gateway).
    pub events_endpoint: Option<String>,
    /// The bus re-driven events go to (default: the stack's `EventBusName`).
    pub event_bus: Option<String>,
    /// AWS Region.
    pub region: Option<String>,
    /// AWS named profile.
    pub profile: Option<String>,
}

/// The resolved target: the SDK configuration and the stack's outputs.
#[derive(Debug, Clone)]
pub struct Context {
    sdk: SdkConfig,
    outputs: BTreeMap<String, String>,
    options: Options,
}

impl Context {
    /// Loads the AWS configuration (dummy credentials for local stand-ins, without
    /// `--stack`) and reads the stack's outputs.
    ///
    /// # Errors
    /// [`AdminError::Usage`] without `--stack` or an endpoint; [`AdminError::Failed`] when the
    /// stack cannot be described.
    pub async fn new(options: Options) -> Result<Self, AdminError> {
        let Some(stack) = options.stack.clone() else {
            if options.endpoint.is_none()
                && options.sqs_endpoint.is_none()
                && options.management_endpoint.is_none()
            {
                return Err(AdminError::Usage(
                    "give --stack <NAME>, or local endpoints (--endpoint and --table, \
                     --management-endpoint, --sqs-endpoint)"
                        .into(),
                ));
            }
            let sdk = Box::pin(deps::sdk_config(Target::Local)).await;
            return Ok(Self {
                sdk,
                outputs: BTreeMap::new(),
                options,
            });
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        let sdk = Box::pin(loader.load()).await;
        if sdk.region().is_none() {
            return Err(AdminError::Usage(
                "no AWS Region: pass --region, or set AWS_REGION or a region in your profile"
                    .into(),
            ));
        }
        let out = aws_sdk_cloudformation::Client::new(&sdk)
            .describe_stacks()
            .stack_name(&stack)
            .send()
            .await
            .map_err(|e| {
                AdminError::Failed(format!("DescribeStacks {stack}: {}", crate::chain(&e)))
            })?;
        let outputs = out
            .stacks()
            .first()
            .map(|s| {
                s.outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((o.output_key()?.to_owned(), o.output_value()?.to_owned()))
                    })
                    .collect()
            })
            .ok_or_else(|| AdminError::Failed(format!("no stack {stack}")))?;
        Ok(Self {
            sdk,
            outputs,
            options,
        })
    }

    fn output(&self, flag: Option<&String>, key: &str, hint: &str) -> Result<String, AdminError> {
        flag.cloned()
            .or_else(|| self.outputs.get(key).cloned())
            .ok_or_else(|| match &self.options.stack {
                Some(stack) => AdminError::Failed(format!(
                    "stack {stack} has no {key} output: is it a Marquee stack?"
                )),
                None => AdminError::Usage(format!("this command needs {hint}")),
            })
    }

    /// The table, through the functions' own adapter.
    ///
    /// # Errors
    /// [`AdminError`] when no table is known.
    pub fn store(&self) -> Result<DynamoStore, AdminError> {
        let table = self.output(self.options.table.as_ref(), "TableName", "--table <NAME>")?;
        Ok(deps::dynamo_store(
            &self.sdk,
            &table,
            self.options.endpoint.as_deref(),
        ))
    }

    /// The Management API, through the functions' own adapter.
    ///
    /// # Errors
    /// [`AdminError`] when no endpoint is known.
    pub fn push(&self) -> Result<ManagementPush, AdminError> {
        let endpoint = self.output(
            self.options.management_endpoint.as_ref(),
            "ManagementEndpoint",
            "--management-endpoint <URL> (the local gateway: http://127.0.0.1:3001)",
        )?;
        Ok(ManagementPush::new(&self.sdk, &endpoint))
    }

    /// An SQS client (for the local server when `--sqs-endpoint` is given).
    #[must_use]
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let mut builder = aws_sdk_sqs::config::Builder::from(&self.sdk);
        if let Some(endpoint) = &self.options.sqs_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_sqs::Client::from_conf(builder.build())
    }

    /// Whether the queues are SQS itself (whose message move task re-drives work items).
    #[must_use]
    pub fn real_sqs(&self) -> bool {
        self.options.sqs_endpoint.is_none()
    }

    /// The dead-letter queues to read: `only` that one, or every one known (all four of a
    /// stack).
    ///
    /// # Errors
    /// [`AdminError`] when a queue's URL is not known.
    pub fn dead_letters(&self, only: Option<Kind>) -> Result<Vec<DeadLetters>, AdminError> {
        let kinds = match only {
            Some(kind) => vec![kind],
            None if self.options.stack.is_some() => Kind::ALL.to_vec(),
            None => self.options.queues.keys().copied().collect(),
        };
        if kinds.is_empty() {
            return Err(AdminError::Usage(
                "no dead-letter queue: give --stack, or their URLs (--events-dlq, --notify-dlq, \
                 --work-dlq, --rooms-dlq)"
                    .into(),
            ));
        }
        kinds
            .into_iter()
            .map(|kind| {
                let flag = format!("--{}-dlq <URL>", kind.name());
                let url = self.output(self.options.queues.get(&kind), kind.output(), &flag)?;
                Ok(DeadLetters { kind, url })
            })
            .collect()
    }

    /// The EventBridge client and bus re-driven events go to, when known.
    #[must_use]
    pub fn events(&self) -> Option<(aws_sdk_eventbridge::Client, Option<String>)> {
        let bus = self
            .options
            .event_bus
            .clone()
            .or_else(|| self.outputs.get("EventBusName").cloned());
        if self.options.events_endpoint.is_none() && self.options.stack.is_none() {
            return None;
        }
        let mut builder = aws_sdk_eventbridge::config::Builder::from(&self.sdk);
        if let Some(endpoint) = &self.options.events_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Some((aws_sdk_eventbridge::Client::from_conf(builder.build()), bus))
    }
}

//! `marquee-notify`: the EventBridge target. Wiring only; the logic is in `marquee`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use marquee::lambda::{NotifyDeps, notify};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    marquee::telemetry::init();
    let deps = NotifyDeps::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent<Value>>| {
        let deadline = instant_of(event.context.deadline);
        let deps = &deps;
        async move {
            notify::handle(deps, event.payload, deadline)
                .await
                .map_err(|failure| Diagnostic {
                    error_type: failure.error_type().to_owned(),
                    error_message: failure.to_string(),
                })
        }
    }))
    .await
}

/// Lambda's deadline (epoch milliseconds) as an `Instant`.
fn instant_of(deadline_ms: u64) -> Option<Instant> {
    let deadline = UNIX_EPOCH.checked_add(Duration::from_millis(deadline_ms))?;
    let left = deadline
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now().checked_add(left)
}

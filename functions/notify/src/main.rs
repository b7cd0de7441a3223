//! `marquee-notify`: the EventBridge target. Wiring only; the logic is in `marquee`.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use marquee::lambda::{NotifyDeps, deadline, notify};
use marquee::trace::TraceHeader;
use serde_json::Value;

// One thread: below 1,769 MB a function has less than one vCPU, and a cold start then spawns
// no worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    marquee::telemetry::init();
    marquee::metrics::cold_start("notify");
    let deps = NotifyDeps::from_env(marquee::function::Function::Notify).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent<Value>>| {
        let deadline = deadline(event.context.deadline);
        // The invocation's X-Ray trace header travels with every work item it sends.
        let trace = TraceHeader::of_invocation(event.context.xray_trace_id.as_deref());
        let deps = &deps;
        async move {
            marquee::trace::carrying(trace, notify::handle(deps, event.payload, deadline))
                .await
                .map_err(|failure| Diagnostic {
                    error_type: failure.error_type().to_owned(),
                    error_message: failure.to_string(),
                })
        }
    }))
    .await
}

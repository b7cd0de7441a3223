//! `marquee-deliver`: the work queue's SQS event source (partial batch responses). Wiring
//! only; the logic is in `marquee`.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use marquee::lambda::{DeliverDeps, deadline, deliver};

// One thread: below 1,769 MB a function has less than one vCPU, and a cold start then spawns
// no worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    marquee::telemetry::init();
    marquee::metrics::cold_start("deliver");
    let deps = DeliverDeps::from_env(marquee::function::Function::Deliver).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let deadline = deadline(event.context.deadline);
        let deps = &deps;
        async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(
                deliver::handle(deps, event.payload, deadline).await,
            )
        }
    }))
    .await
}

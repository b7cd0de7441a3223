//! `marquee-subscribe`: the `subscribe`, `unsubscribe`, `ping`, `publish` and `$default`
//! routes. Wiring only; the logic is in `marquee`.

// The handler future nests the SDK's deep futures (query, transaction, post); the layout
// computation needs more than the default depth.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use marquee::lambda::{SubscribeDeps, deadline, subscribe};

// One thread: below 1,769 MB a function has less than one vCPU, and a cold start then spawns
// no worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    marquee::telemetry::init();
    marquee::metrics::cold_start("subscribe");
    let deps = SubscribeDeps::from_env().await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let deadline = deadline(event.context.deadline);
            let deps = &deps;
            async move {
                Ok::<_, lambda_runtime::Error>(
                    subscribe::handle_until(deps, event.payload, deadline).await,
                )
            }
        },
    ))
    .await
}

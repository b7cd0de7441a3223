//! `marquee-connect`: the `$connect` route. Wiring only; the logic is in `marquee`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};
use marquee::lambda::{ConnectDeps, connect};

// One thread: below 1,769 MB a function has less than one vCPU, and a cold start then spawns
// no worker threads.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    marquee::telemetry::init();
    marquee::metrics::cold_start("connect");
    let deps = ConnectDeps::from_env().await?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async {
            Ok::<_, lambda_runtime::Error>(connect::handle(&deps, event.payload).await)
        },
    ))
    .await
}

//! `marquee-hello`: the smallest `lambda_runtime` function, echoing its event. The cold-start
//! benchmark (`scripts/bench coldstart`) measures every function against it: same toolchain,
//! same release profile, same Runtime API stand-in.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async {
        Ok::<Value, lambda_runtime::Error>(event.payload)
    }))
    .await
}

//! What several test files share: the store and gateway suite macros, the fan-out world
//! ([`world`]), the local gateway harness ([`gateway`]), and sample events with a test's
//! changes. A helper one file uses stays in that file.

pub(crate) mod gateway;
pub(crate) mod world;

use serde_json::json;

/// Runs each named `async fn case<S: Store>(store: S)` of the calling module against both
/// stores: `MemoryStore` (which the module imports) and a fresh DynamoDB Local table.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::MemoryStore::new()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(marquee_tests::fresh_table().await).await;
                }
            )*
        }
    };
}

/// Runs each named `async fn case(backing: Backing)` of the calling module through the local
/// gateway twice: on the embedded store and on DynamoDB Local.
macro_rules! both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backing::Memory).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backing::Dynamo).await;
                }
            )*
        }
    };
}

/// A realistic 98-character artist name whose key is 102 characters: NFKC makes `№` `no`,
/// `Ⅸ` `ix` and `…` `...`, so the key is longer than a display name may be.
pub(crate) const LONG_KEY_NAME: &str = "The Royal Concertgebouw Symphony Orchestra & Choir \u{2116} \u{2168}\u{2026} Beethoven Symphony No. 9 Live in Amsterdam";

/// `events/connect.json` with the token replaced (`None` removes the query string).
pub(crate) fn connect_request(
    token: Option<&str>,
) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let mut event = marquee_tests::event_json("connect.json");
    match token {
        Some(token) => {
            event["queryStringParameters"] = json!({ "token": token });
            event["multiValueQueryStringParameters"] = json!({ "token": [token] });
        }
        None => {
            event["queryStringParameters"] = serde_json::Value::Null;
            event["multiValueQueryStringParameters"] = serde_json::Value::Null;
        }
    }
    serde_json::from_value(event).unwrap()
}

//! Property tests of every parser that takes outside input: wire frames, artist names,
//! tokens, EventBridge events and queue messages. None may panic, whatever the input, and a
//! refused message writes nothing.

// Tests state their expectations with unwrap; a panic is a failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use aws_lambda_events::eventbridge::EventBridgeEvent;
use marquee::auth::{Secret, TokenClaims, TokenVerifier, mint};
use marquee::config::FanoutSettings;
use marquee::domain::{Artist, Connection, ConnectionId, Scope, UserId};
use marquee::lambda::notify::{parse_event, parse_revocation};
use marquee::push::recording::RecordingPush;
use marquee::queue::memory::MemoryQueue;
use marquee::routes::fanout::Ports;
use marquee::routes::subscribe::{ClientFrame, SubscribeSettings, handle_frame};
use marquee::store::ConnectionStore;
use marquee::store::memory::MemoryStore;
use marquee::wire::{Frame, parse_request};
use marquee::work::WorkItem;
use proptest::prelude::*;
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256-keys";

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Messages a client might send: garbage, JSON, and near-misses of the real actions.
fn any_body() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,200}",
        any_json().prop_map(|v| v.to_string()),
        (
            prop_oneof![
                Just("subscribe".to_owned()),
                Just("unsubscribe".to_owned()),
                ".{0,12}"
            ],
            any_json()
        )
            .prop_map(
                |(action, artists)| json!({"action": action, "artists": artists}).to_string()
            ),
        prop::collection::vec(".{0,120}", 0..30)
            .prop_map(|names| json!({"action": "subscribe", "artists": names}).to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn wire_frames_never_panic_and_a_refusal_has_a_code(body in any_body(), binary in any::<bool>()) {
        if let Err(rejection) = parse_request(Some(&body), binary) {
            let frame = rejection.frame().to_bytes();
            let frame: Value = serde_json::from_slice(&frame).unwrap();
            prop_assert_eq!(&frame["type"], "error");
            prop_assert!(frame["code"].as_str().is_some_and(|c| !c.is_empty()));
        }
    }

    #[test]
    fn artist_keys_are_stable_and_clean(raw in "\\PC{0,120}|.{0,120}") {
        if let Ok(artist) = Artist::parse(&raw) {
            let key = artist.key().as_str();
            prop_assert!(!key.is_empty());
            prop_assert!(!key.chars().any(char::is_control));
            prop_assert!(key.len() <= 1024);
            // The display name parses again to the same key.
            let again = Artist::parse(artist.name()).unwrap();
            prop_assert_eq!(again.key(), artist.key());
        }
    }

    #[test]
    fn tokens_never_panic_and_only_signed_ones_pass(raw in ".{0,300}", flip in 0usize..400) {
        let secret = Secret::new(SECRET).unwrap();
        let verifier = TokenVerifier::new(&secret, "marquee");
        prop_assert!(verifier.verify(Some(&raw), NOW).is_err());
        let token = mint(&secret, &TokenClaims {
            sub: "alice".into(),
            aud: "marquee".into(),
            iat: NOW,
            exp: NOW + 60,
            nbf: None,
            artists: None,
            subscribe: None,
            publish: None,
        }).unwrap();
        prop_assert!(verifier.verify(Some(&token), NOW).is_ok());
        // Any one changed character of a signed token is refused.
        let mut bytes = token.into_bytes();
        let at = flip % bytes.len();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert!(verifier.verify(Some(&tampered), NOW).is_err());
    }

    #[test]
    fn eventbridge_events_never_panic(id in proptest::option::of(".{0,80}"), detail in any_json()) {
        let mut event: EventBridgeEvent<Value> = EventBridgeEvent::default();
        event.id = id;
        event.detail = detail;
        let _ = parse_event(&event);
        let _ = parse_revocation(&event, NOW);
    }

    #[test]
    fn queue_messages_never_panic(body in prop_oneof![".{0,200}", any_json().prop_map(|v| v.to_string())]) {
        let _ = WorkItem::from_json(&body);
    }

    #[test]
    fn a_refused_message_writes_nothing(body in any_body()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (store, push) = (MemoryStore::new(), RecordingPush::new());
            let id = ConnectionId::parse("c1").unwrap();
            store.put_connection(&Connection {
                id: id.clone(),
                user_id: UserId::parse("alice").unwrap(),
                connected_at: NOW,
                expires_at: NOW + 100,
                scope: Scope::Any,
                publish: Vec::new(),
            }).await.unwrap();
            let message = ClientFrame { connection: &id, body: Some(&body), is_base64_encoded: false, now: NOW, deadline: None };
            let queue = MemoryQueue::new(std::time::Duration::from_secs(30), 5);
            let fanout = FanoutSettings::default();
            let ports = Ports::new(&store, &push, &queue, &fanout);
            let outcome = handle_frame(&ports, &SubscribeSettings::default(), message).await;
            let state = store.connection_state(&id, NOW).await.unwrap().unwrap();
            let delivered = push.delivered();
            if matches!(outcome.reply, Frame::Error { .. }) {
                prop_assert_eq!(state.version, 0, "{}", body);
                prop_assert!(state.subscriptions.is_empty());
                prop_assert_eq!(delivered.len(), 1, "exactly one reply");
            }
            // The reply comes first (welcomes may follow a subscribe).
            let mut first: serde_json::Value = serde_json::from_slice(&delivered[0].1).unwrap();
            if let Some(fields) = first.as_object_mut() {
                fields.remove("ref");
            }
            prop_assert_eq!(first, serde_json::to_value(&outcome.reply).unwrap());
            Ok(())
        })?;
    }
}

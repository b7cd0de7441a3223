//! `notify` through its handler, against DynamoDB Local and the Management API stand-in
//! reached by the real SDK client (so 410, 429 and 500 travel over HTTP).

use std::time::Duration;

use marquee::config::FanoutSettings;
use marquee::lambda::notify::NotifyFailure;
use marquee::routes::notify::Mode;
use marquee_tests::event_json;
use serde_json::json;

use crate::support::world::{fast, tickets_on_sale, world, world_with};

#[tokio::test]
async fn a_thousand_subscribers_across_every_shard_each_get_exactly_one_notification_inline() {
    // Inline up to 1,000 here (the default is 500): one invocation, every shard's pages.
    let w = world_with(
        FanoutSettings {
            inline_max: 1000,
            ..fast(100)
        },
        Duration::from_secs(10),
    )
    .await;
    let fans = w.subscribers("fan", "Adele", 1000, 600).await;
    let others = w.subscribers("other", "Muse", 20, 600).await;

    let summary = w
        .notify(tickets_on_sale("evt-1000", "adele"))
        .await
        .unwrap();

    assert_eq!(summary.mode, Mode::Inline);
    assert_eq!(
        (
            summary.tally.delivered,
            summary.tally.failed,
            summary.tally.gone
        ),
        (1000, 0, 0)
    );
    assert_eq!(summary.pages, 16, "one probe page per shard");
    let counts = w.delivery_counts();
    assert_eq!(counts.len(), 1000);
    assert!(fans.iter().all(|id| counts.get(id) == Some(&1)));
    assert!(others.iter().all(|id| !counts.contains_key(id)));
    let frame = w.api.delivered_to(&fans[0])[0].json().unwrap();
    assert_eq!(frame["type"], "notification");
    assert_eq!(frame["id"], "evt-1000");
    assert_eq!(frame["artist"], "adele");
    assert_eq!(frame["detail"]["artist"], "adele");
    assert!(
        frame["detail"]["venue"].is_string(),
        "the whole detail is forwarded"
    );
    assert!(frame["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn expired_records_are_not_notified() {
    let w = world(100).await;
    let live = w.subscribers("live", "Adele", 3, 600).await;
    let expired = w.subscribers("old", "Adele", 3, -1).await;
    let summary = w.notify(tickets_on_sale("evt-exp", "Adele")).await.unwrap();
    assert_eq!(summary.tally.delivered, 3);
    let counts = w.delivery_counts();
    assert!(live.iter().all(|id| counts.contains_key(id)));
    assert!(expired.iter().all(|id| !counts.contains_key(id)));
}

#[tokio::test]
async fn a_gone_connection_is_cleaned_up_and_only_that_one() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 3, 600).await;
    w.api.mark_gone(&ids[1]);
    let summary = w.notify(tickets_on_sale("evt-410", "Adele")).await.unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.gone), (2, 1));
    let pks = w.pks().await;
    assert!(
        !pks.iter().any(|pk| pk == &format!("CONN#{}", ids[1])),
        "{pks:?}"
    );
    for kept in [&ids[0], &ids[2]] {
        let records = pks
            .iter()
            .filter(|pk| **pk == format!("CONN#{kept}"))
            .count();
        assert_eq!(records, 2, "{kept} keeps its connection and subscription");
    }
}

#[tokio::test]
async fn a_throttled_post_is_retried_then_delivered() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 2, 600).await;
    w.api.fail_next(&ids[0], 429, 2);
    let summary = w.notify(tickets_on_sale("evt-429", "Adele")).await.unwrap();
    assert_eq!(
        (
            summary.tally.delivered,
            summary.tally.failed,
            summary.tally.retried
        ),
        (2, 0, 2)
    );
    assert_eq!(w.api.attempts(&ids[0]), 3);
    assert_eq!(w.api.delivered_to(&ids[0]).len(), 1);
}

#[tokio::test]
async fn a_server_error_is_retried_then_delivered() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 1, 600).await;
    w.api.fail_next(&ids[0], 500, 1);
    let summary = w.notify(tickets_on_sale("evt-500", "Adele")).await.unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.retried), (1, 1));
}

#[tokio::test]
async fn a_connection_failing_past_the_attempt_limit_does_not_hold_up_the_rest() {
    let w = world(100).await;
    let ids = w.subscribers("c", "Adele", 5, 600).await;
    w.api.fail_next(&ids[2], 500, 100);
    let summary = w
        .notify(tickets_on_sale("evt-fail", "Adele"))
        .await
        .unwrap();
    assert_eq!((summary.tally.delivered, summary.tally.failed), (4, 1));
    assert_eq!(
        w.api.attempts(&ids[2]),
        FanoutSettings::default().max_attempts
    );
}

#[tokio::test]
async fn a_redelivered_event_is_delivered_once() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 3, 600).await;
    let first = w.notify(tickets_on_sale("evt-dup", "Adele")).await.unwrap();
    let again = w.notify(tickets_on_sale("evt-dup", "Adele")).await.unwrap();
    assert_eq!((first.tally.delivered, first.mode), (3, Mode::Inline));
    assert_eq!((again.tally.delivered, again.mode), (0, Mode::Duplicate));
    assert_eq!(w.api.delivered().len(), 3);
}

#[tokio::test]
async fn an_event_without_a_valid_artist_fails_without_retry_and_writes_nothing() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 1, 600).await;
    let before = w.pks().await.len();
    for detail in [json!({}), json!({"artist": 7}), json!({"artist": "  "})] {
        let mut event = event_json("notify.json");
        event["detail"] = detail.clone();
        let err = w.notify(event).await.unwrap_err();
        assert!(
            matches!(err, NotifyFailure::Invalid(_)),
            "{detail}: {err:?}"
        );
        assert!(err.to_string().starts_with("invalid_event"), "{err}");
    }
    assert!(w.api.delivered().is_empty());
    assert_eq!(w.pks().await.len(), before, "no claim was written");
}

#[tokio::test]
async fn an_event_whose_frame_would_exceed_128_kib_is_invalid_and_writes_nothing() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 2, 600).await;
    let before = w.pks().await.len();
    let mut event = tickets_on_sale("evt-big", "Adele");
    event["detail"]["blurb"] = json!("x".repeat(marquee::wire::MAX_OUTBOUND_BYTES));

    let err = w.notify(event).await.unwrap_err();

    assert!(matches!(err, NotifyFailure::Invalid(_)), "{err:?}");
    assert_eq!(
        err.error_type(),
        "InvalidEvent",
        "it lands in the dead-letter queue"
    );
    assert!(w.api.delivered().is_empty(), "no post was even tried");
    assert_eq!(w.api.attempts("c-00000"), 0);
    assert_eq!(w.pks().await.len(), before, "no claim was written");
}

#[tokio::test]
async fn a_revocation_without_a_usable_user_or_reason_fails_without_retry_and_writes_nothing() {
    let w = world(100).await;
    w.subscribers("c", "Adele", 1, 600).await;
    let before = w.pks().await.len();
    for detail in [
        json!({}),
        json!({"user": 7}),
        json!({"user": "  "}),
        json!({"user": "x".repeat(257)}),
        json!({"user": "mallory", "reason": 7}),
        json!({"user": "mallory", "reason": "x".repeat(501)}),
    ] {
        let mut event = event_json("revoke.json");
        event["detail"] = detail.clone();

        let err = w.notify(event).await.unwrap_err();

        assert!(
            matches!(err, NotifyFailure::Invalid(_)),
            "{detail}: {err:?}"
        );
        assert_eq!(err.error_type(), "InvalidEvent", "{detail}");
    }
    assert!(w.api.delivered().is_empty());
    assert!(w.api.deleted().is_empty(), "nobody was closed");
    assert_eq!(w.pks().await.len(), before, "no revocation was written");
}

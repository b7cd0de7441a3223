//! The chat-room script through the local gateway with real WebSocket clients, on both
//! stores: entering (a welcome to self, `joined` to the others), a comment to all, leaving
//! (`left` to the others), and an announcement to everyone.

use marquee::lambda::notify::ANNOUNCEMENT_DETAIL_TYPE;
use marquee::report::DEFAULT_EVENT_SOURCE;
use marquee_local::gateway::{DevToken, Gateway, Limits};
use serde_json::{Value, json};
use tokio_tungstenite::connect_async;

use crate::support::gateway::{Backing, Client, gateway, next_any_frame, next_frame, send};

async fn chatter(gateway: &Gateway, sub: &str) -> Client {
    let token = gateway.token_with(
        sub,
        &DevToken {
            publish: Some(vec!["Adele".into()]),
            ..DevToken::default()
        },
    );
    connect_async(gateway.ws_url(&token)).await.unwrap().0
}

/// Sends a subscribe to Adele's room; returns the reply and the welcome. A `joined` of someone
/// who entered at the same moment may come between them and is passed over: a route's presence
/// frames race the other routes' as they do in AWS, where each message is its own invocation.
async fn enter(client: &mut Client) -> Vec<Value> {
    send(client, json!({"action": "subscribe", "artists": ["Adele"]})).await;
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let frame = next_any_frame(client).await;
        if frame["type"] != "joined" {
            frames.push(frame);
        }
    }
    frames
}

async fn the_chat_room_script(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut ann = chatter(&gateway, "ann").await;
    let mut bo = chatter(&gateway, "bo").await;

    // Enter: a greeting to self; "entered" to the others.
    let ann_in = enter(&mut ann).await;
    let bo_in = enter(&mut bo).await;
    let bo_entered = next_any_frame(&mut ann).await;

    // A comment to all (but the sender, who is told it went out).
    send(
        &mut ann,
        json!({"action": "publish", "artist": "Adele", "data": {"kind": "chat", "text": "hello"}, "ref": "c1"}),
    )
    .await;
    let published = next_any_frame(&mut ann).await;
    // Bo may first hear that Ann joined, when her route's presence read the room after Bo was in.
    let comment = next_frame(&mut bo).await;

    // Leave: the others are told.
    bo.close(None).await.unwrap();
    let bo_left = next_any_frame(&mut ann).await;

    assert_eq!(ann_in[0]["type"], "subscribed");
    assert_eq!(
        ann_in[1],
        json!({"type": "welcome", "artist": "Adele", "subscribers": 1})
    );
    assert_eq!(
        bo_in[1],
        json!({"type": "welcome", "artist": "Adele", "subscribers": 2})
    );
    assert_eq!(
        bo_entered,
        json!({"type": "joined", "artist": "Adele", "user": "bo", "subscribers": 2})
    );
    assert_eq!(
        (published["type"].as_str(), published["ref"].as_str()),
        (Some("published"), Some("c1"))
    );
    assert_eq!(comment["type"], "message");
    assert_eq!(comment["id"], published["id"]);
    assert_eq!(comment["from"], "ann");
    assert_eq!(comment["data"], json!({"kind": "chat", "text": "hello"}));
    assert_eq!(
        bo_left,
        json!({"type": "left", "artist": "Adele", "user": "bo", "subscribers": 1})
    );
}

async fn an_announcement_reaches_every_open_socket(backing: Backing) {
    let gateway = gateway(backing, Limits::default()).await;
    let mut one = chatter(&gateway, "one").await;
    let mut two = chatter(&gateway, "two").await;
    enter(&mut one).await;
    let answer = marquee_local::post_json(
        &format!("{}/events", gateway.http_url()),
        &json!({"Entries": [{
            "Source": DEFAULT_EVENT_SOURCE,
            "DetailType": ANNOUNCEMENT_DETAIL_TYPE,
            "Detail": json!({"message": "The sale is delayed 10 minutes"}).to_string(),
        }]}),
    )
    .await
    .unwrap();
    let id = answer["Entries"][0]["EventId"].as_str().unwrap();

    for client in [&mut one, &mut two] {
        let mut frame = next_any_frame(client).await;
        while frame["type"] == "joined" {
            frame = next_any_frame(client).await;
        }
        assert_eq!(frame["type"], "announcement");
        assert_eq!(frame["id"], id);
        assert_eq!(frame["message"], "The sale is delayed 10 minutes");
    }
}

both_stores!(
    the_chat_room_script,
    an_announcement_reaches_every_open_socket
);

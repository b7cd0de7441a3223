//! The `lastfan` mode: the end-to-end time from an on-sale event to the last fan's
//! notification, through the local gateway at its defaults.
//!
//! For each audience N (`--fans`, 1,000 / 10,000 / 50,000 by default) and each store (the
//! embedded one, and DynamoDB Local with `--dynamodb-endpoint`), in a fresh gateway
//! (`marquee-local serve`, a child process with none of its settings changed; see
//! [`crate::local`]):
//!
//! 1. N real WebSocket clients connect (`--connect-concurrency` handshakes in flight, each
//!    running `$connect` with a dev token; client `i` from 127.0.0.(2 + i / 20,000)) and
//!    subscribe to one artist of their own, named for the row, so nothing of an earlier row can
//!    reach them.
//! 2. A second later, ONE EventBridge `PutEvents` entry for that artist goes to the gateway's
//!    PutEvents endpoint (`POST /events`, with the source and detail type of the rule; in AWS
//!    that is what invokes `notify`). Time zero is the moment just before the request is sent.
//! 3. Every client notes the moment its first `notification` frame arrives; it counts when its
//!    `id` is the event's. A fan with none within `--patience-seconds` is lost.
//!
//! Each row's room has one member more than its fans: the poster. With `--busy-room`, each
//! audience gets a second row in which the room is busy: the poster (a token that may publish
//! to it) sends a burst of
//! `--room-burst` room messages (20, the per-connection publish burst) just before the
//! `PutEvents`, each of them to every fan. The sale must keep its pace however busy the room
//! (issue 18, item 3): `vs quiet` is the busy row's last fan over the quiet row's, and the
//! `room msgs` column counts the messages the gateway accepted (`published`); the rest were
//! refused by the room's bucket of posts (`rate_limited`).
//!
//! Reported per row: the first and the last arrival, p50 and p99 (nearest rank), the lost, and
//! the floor N / budget, the budget being the gateway's `FANOUT_BUDGET` (posts a second one
//! event's fan-out may make, [`marquee::config::DEFAULT_FANOUT_BUDGET`]): no fan-out that keeps
//! to the budget can reach the last fan sooner. `last / floor` is how far from it the last fan
//! is; `load` is the machine's load average over the minute before (it is shared with other
//! work). On stderr, with each row: the CPU time the gateway and this process used from the
//! `PutEvents` to the last arrival, and the arrivals per 250 ms, which show where the time went.
//!
//! The gateway is killed before the clients close, so no row's `$disconnect`s run into the
//! next, and client ports do not linger in `TIME_WAIT`. Every socket is an open file here and
//! in the gateway: N plus a margin must fit under the hard limit (see
//! [`crate::local::check_fd_limit`]), which is checked for the largest N before anything
//! starts.

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::local::{
    GatewayProcess, Listeners, Socket, check_fd_limit, cpu_seconds_of, field, next_json,
    subscribe_all,
};
use crate::stats::percentile;
use crate::{BoxError, progress, write_out};

/// The width of the arrival timeline's steps (printed on stderr with each row).
const TIMELINE_STEP: Duration = Duration::from_millis(250);

/// Options of the `lastfan` mode.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Audiences, one row each (per store).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    fans: Vec<usize>,
    /// Also run every audience on DynamoDB (Local) at this endpoint, after the embedded store
    /// (`scripts/bench lastfan --dynamodb` starts DynamoDB Local and passes it).
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Handshakes (and subscribes) in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// A fan whose notification has not arrived this many seconds after the `PutEvents` is
    /// lost.
    #[arg(long, default_value_t = 120)]
    patience_seconds: u64,
    /// Also measure every audience with a busy room: one more member sends a burst of
    /// `--room-burst` room messages just before the `PutEvents`.
    #[arg(long)]
    busy_room: bool,
    /// The room messages of a busy row, sent back to back.
    #[arg(long, default_value_t = 20)]
    room_burst: usize,
    /// The `marquee-local` binary (a release build; `scripts/bench lastfan` builds it).
    #[arg(long, default_value = "target/release/marquee-local")]
    gateway_bin: PathBuf,
    /// Start the gateway with `--direct-push`: its in-process functions post straight into
    /// the sockets, not through its Management API with the signing SDK client. In AWS each
    /// post's CPU is spent in the posting invocation's own execution environment; here every
    /// function shares the gateway's process, so a busy room's signed posts take CPU from the
    /// sale's (see docs/benchmarks.md, "A busy room beside the sale").
    #[arg(long)]
    direct_push: bool,
}

/// Where the gateway keeps its state.
#[derive(Debug, Clone, Copy)]
enum Store<'a> {
    /// The embedded in-memory store (the gateway's default).
    Embedded,
    /// DynamoDB (Local) at this endpoint (`--dynamodb-endpoint`).
    Dynamo(&'a str),
}

impl Store<'_> {
    fn name(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Dynamo(_) => "DynamoDB Local",
        }
    }

    fn options(self) -> Vec<String> {
        match self {
            Self::Embedded => Vec::new(),
            Self::Dynamo(endpoint) => vec!["--dynamodb-endpoint".into(), endpoint.to_owned()],
        }
    }
}

/// One row of the table: seconds from the `PutEvents` to each fan's notification.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    fans: usize,
    /// The room messages that went out beside the sale (`None`: a quiet row).
    room: Option<usize>,
    first: f64,
    last: f64,
    floor: f64,
    p50: f64,
    p99: f64,
    lost: usize,
    /// The machine's load average over the last minute, read a second before the `PutEvents`
    /// (the machine is shared: this says how shared).
    load: f64,
}

impl Row {
    /// The row of `fans` fans of which those in `delays` (seconds, any order) got the
    /// notification, against a fan-out budget of `budget` posts a second, at `load`.
    fn of(fans: usize, mut delays: Vec<f64>, budget: u32, load: f64) -> Self {
        delays.sort_by(f64::total_cmp);
        #[allow(clippy::cast_precision_loss)]
        let floor = fans as f64 / f64::from(budget.max(1));
        Self {
            fans,
            room: None,
            first: delays.first().copied().unwrap_or(f64::NAN),
            last: delays.last().copied().unwrap_or(f64::NAN),
            floor,
            p50: percentile(&delays, 0.50),
            p99: percentile(&delays, 0.99),
            lost: fans.saturating_sub(delays.len()),
            load,
        }
    }

    /// Its table row; a busy row also gives its last fan over `quiet`'s.
    fn markdown(&self, store: Store<'_>, quiet: Option<&Self>) -> String {
        let (room, versus) = match (self.room, quiet) {
            (None, _) => ("quiet".to_owned(), String::new()),
            (Some(sent), Some(quiet)) => {
                (sent.to_string(), format!("{:.2}", self.last / quiet.last))
            }
            (Some(sent), None) => (sent.to_string(), String::new()),
        };
        format!(
            "| {} | {} | {room} | {:.3} | {:.3} | {:.3} | {:.2} | {versus} | {:.3} | {:.3} | {} | {:.1} |\n",
            self.fans,
            store.name(),
            self.first,
            self.last,
            self.floor,
            self.last / self.floor,
            self.p50,
            self.p99,
            self.lost,
            self.load,
        )
    }
}

/// Runs every audience on every store, printing each row as it is measured.
pub(crate) async fn run(args: &Args) -> Result<(), BoxError> {
    let largest = args.fans.iter().copied().max().ok_or("--fans is empty")?;
    if args.fans.contains(&0) {
        return Err("--fans must be at least 1".into());
    }
    check_fd_limit(largest)?;
    let budget = marquee::config::DEFAULT_FANOUT_BUDGET;
    let stores: Vec<Store<'_>> = std::iter::once(Store::Embedded)
        .chain(args.dynamodb_endpoint.as_deref().map(Store::Dynamo))
        .collect();
    write_out(&format!(
        "lastfan: one PutEvents to the local gateway at its defaults{} (marquee-local release \
         build, fan-out budget {budget} posts/s, inline up to {} fans, {} deliver workers); \
         seconds from sending the request to each fan's notification\n\n\
         | fans | store | room msgs | first (s) | last (s) | floor (s) | last / floor | vs quiet | p50 (s) | p99 (s) | lost | load |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        if args.direct_push {
            ", but --direct-push"
        } else {
            ""
        },
        marquee::config::DEFAULT_INLINE_MAX_SUBSCRIBERS,
        marquee::config::DEFAULT_DELIVER_MAX_CONCURRENCY,
    ))?;
    for store in stores {
        for &fans in &args.fans {
            let quiet = measure(args, store, fans, budget, None).await?;
            write_out(&quiet.markdown(store, None))?;
            if args.busy_room {
                let busy = measure(args, store, fans, budget, Some(args.room_burst)).await?;
                write_out(&busy.markdown(store, Some(&quiet)))?;
            }
        }
    }
    write_out("\n")
}

/// One row: a fresh gateway, `fans` subscribed clients, one `PutEvents`; with a `burst`, one
/// more client in the room sends that many room messages just before it.
async fn measure(
    args: &Args,
    store: Store<'_>,
    fans: usize,
    budget: u32,
    burst: Option<usize>,
) -> Result<Row, BoxError> {
    let mut options = store.options();
    if args.direct_push {
        options.push("--direct-push".into());
    }
    let gateway = GatewayProcess::start(&args.gateway_bin, &options).await?;
    let started = Instant::now();
    let quiet = if burst.is_some() { "busy" } else { "quiet" };
    let artist = format!("Last Fan {fans} {quiet} {}", std::process::id());
    // One member more than the fans in both rows, the poster (idle in a quiet row), so the
    // two rows' rooms are the same size: presence (on up to PRESENCE_MAX_MEMBERS) is on or off
    // in both alike.
    let sockets = gateway
        .connect(fans + 1, args.connect_concurrency, Some(&artist))
        .await?;
    let connected = started.elapsed();
    let mut sockets = subscribe_all(sockets, &artist, args.connect_concurrency).await?;
    progress(&format!(
        "lastfan: {} store, {fans} fans connected in {:.1} s and subscribed in {:.1} s more",
        store.name(),
        connected.as_secs_f64(),
        (started.elapsed() - connected).as_secs_f64(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = load_average();
    let cpu_before = (gateway.cpu_seconds()?, cpu_seconds_of(std::process::id())?);

    let deadline = Instant::now() + Duration::from_secs(args.patience_seconds);
    let mut poster = sockets.pop().ok_or("no socket for the room's poster")?;
    // A quiet row's poster stays connected, idle, to the end (a close would tell the room).
    let (poster, idle) = match burst {
        Some(messages) => {
            send_burst(&mut poster, &artist, messages).await?;
            let replies = tokio::spawn(count_replies(poster, messages, deadline));
            (Some(replies), None)
        }
        None => (None, Some(poster)),
    };
    let listeners = Listeners::spawn(sockets, deadline);
    let sent = Instant::now();
    let event_id = gateway.publish(&artist, fans).await?;
    let (delays, held) = listeners.arrivals(&event_id, sent).await?;
    let room = match poster {
        Some(replies) => Some(replies.await?),
        None => None,
    };
    let cpu = (
        gateway.cpu_seconds()? - cpu_before.0,
        cpu_seconds_of(std::process::id())? - cpu_before.1,
    );
    let arrivals = per_interval(&delays, TIMELINE_STEP);
    let row = Row {
        room,
        ..Row::of(fans, delays, budget, load)
    };
    progress(&format!(
        "lastfan: {} store, {fans} fans ({quiet} room): last {:.3} s ({:.2} x the floor), {} lost; CPU from \
         the PutEvents to the last fan: gateway {:.2} s, clients {:.2} s; arrivals per {} ms: \
         {arrivals:?}",
        store.name(),
        row.last,
        row.last / row.floor,
        row.lost,
        cpu.0,
        cpu.1,
        TIMELINE_STEP.as_millis(),
    ));
    gateway.stop().await;
    drop((held, idle));
    Ok(row)
}

/// Sends `messages` room messages to `artist`'s room back to back, without waiting for replies.
async fn send_burst(socket: &mut Socket, artist: &str, messages: usize) -> Result<(), BoxError> {
    for i in 0..messages {
        let frame = json!({
            "action": "publish",
            "artist": artist,
            "data": {"kind": "chat", "text": format!("busy room message {i}")},
        });
        socket.send(WsMessage::text(frame.to_string())).await?;
    }
    Ok(())
}

/// Reads the poster's replies until `messages` of them have come (or `deadline`); returns how
/// many were `published` (the others are refusals, `rate_limited` by the room's bucket).
async fn count_replies(mut socket: Socket, messages: usize, deadline: Instant) -> usize {
    let (mut replies, mut published) = (0, 0);
    while replies < messages {
        let Ok(Some(frame)) = next_json(&mut socket, deadline).await else {
            break;
        };
        match field(&frame, "type") {
            Some("published") => {
                replies += 1;
                published += 1;
            }
            Some("error") => replies += 1,
            _ => {}
        }
    }
    published
}

/// The machine's load average over the last minute (`/proc/loadavg`; NaN where unreadable).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// How many of `delays` (seconds) fall in each `step` from zero, up to the last.
fn per_interval(delays: &[f64], step: Duration) -> Vec<usize> {
    let step = step.as_secs_f64();
    let mut counts = Vec::new();
    for delay in delays {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let at = (delay / step).floor().max(0.0) as usize;
        if counts.len() <= at {
            counts.resize(at + 1, 0);
        }
        if let Some(count) = counts.get_mut(at) {
            *count += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_spans_the_first_to_the_last_arrival_against_the_floor() {
        let delays: Vec<f64> = (1..=1000).rev().map(|ms| f64::from(ms) / 1000.0).collect();

        let row = Row::of(1000, delays, 5000, 1.5);

        assert_eq!(
            row,
            Row {
                fans: 1000,
                room: None,
                first: 0.001,
                last: 1.0,
                floor: 0.2,
                p50: 0.5,
                p99: 0.99,
                lost: 0,
                load: 1.5,
            }
        );
    }

    #[test]
    fn fans_without_an_arrival_are_lost() {
        let row = Row::of(10, vec![0.3, 0.1], 5000, 0.0);

        assert_eq!((row.lost, row.first, row.last), (8, 0.1, 0.3));
    }

    #[test]
    fn arrivals_are_counted_per_step_from_zero() {
        let delays = [0.01, 0.24, 0.26, 0.9];

        assert_eq!(
            per_interval(&delays, Duration::from_millis(250)),
            [2, 1, 0, 1]
        );
    }

    #[test]
    fn the_markdown_row_has_a_cell_per_column() {
        let row = Row::of(10_000, vec![0.5, 2.5], 5000, 2.31);

        assert_eq!(
            row.markdown(Store::Dynamo("http://127.0.0.1:8000"), None),
            "| 10000 | DynamoDB Local | quiet | 0.500 | 2.500 | 2.000 | 1.25 |  | 0.500 | 2.500 | 9998 | 2.3 |\n"
        );
    }

    #[test]
    fn a_busy_row_gives_its_room_messages_and_its_last_fan_against_the_quiet_rows() {
        let quiet = Row::of(100, vec![0.05, 0.1], 5000, 0.5);
        let busy = Row {
            room: Some(20),
            ..Row::of(100, vec![0.05, 0.15], 5000, 0.5)
        };

        assert_eq!(
            busy.markdown(Store::Embedded, Some(&quiet)),
            "| 100 | embedded | 20 | 0.050 | 0.150 | 0.020 | 7.50 | 1.50 | 0.050 | 0.150 | 98 | 0.5 |\n"
        );
    }
}

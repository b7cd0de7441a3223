//! `marquee-admin`: operator commands for a deployed stack or the local gateway.
//!
//! ```text
//! marquee-admin --stack marquee stats
//! marquee-admin --endpoint http://127.0.0.1:8000 --table marquee user alice --json
//! ```

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use marquee::domain::{ConnectionId, EventId, UserId, now_epoch_seconds};
use marquee_admin::dlq::{self, Kind, Redrive};
use marquee_admin::render::Output;
use marquee_admin::target::{Context, Options};
use marquee_admin::{AdminError, commands};

const EXIT_CODES: &str = "Exit codes:\n  \
    0  done\n  \
    1  a call failed (AWS, the table, the Management API), no report is kept for the event, \
    a re-drive left messages behind, or event --wait ended with the fan-out incomplete or \
    still running\n  \
    2  bad usage or bad input: nothing was read or written";

/// Look after a Marquee stack, or the local gateway: counts, a user's connections, closing a
/// connection, the dead-letter queues. A table by default, JSON with --json.
#[derive(Debug, Parser)]
#[command(name = "marquee-admin", version, after_help = EXIT_CODES)]
struct Cli {
    /// The CloudFormation stack: its outputs give the table, the Management API, the queues
    /// and the bus (default AWS credentials; --region, --profile).
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
    /// DynamoDB's endpoint: DynamoDB Local, e.g. http://127.0.0.1:8000.
    #[arg(long, global = true, value_name = "URL")]
    endpoint: Option<String>,
    /// The table (default: the stack's TableName).
    #[arg(long, global = true, value_name = "NAME")]
    table: Option<String>,
    /// The Management API (default: the stack's ManagementEndpoint; the local gateway:
    /// http://127.0.0.1:3001).
    #[arg(long, global = true, value_name = "URL")]
    management_endpoint: Option<String>,
    /// An SQS-compatible server (moto), e.g. http://127.0.0.1:9324.
    #[arg(long, global = true, value_name = "URL")]
    sqs_endpoint: Option<String>,
    /// The events dead-letter queue (default: the stack's EventDeadLetterQueueUrl).
    #[arg(long, global = true, value_name = "URL")]
    events_dlq: Option<String>,
    /// The notify failure queue (default: the stack's NotifyFailureQueueUrl).
    #[arg(long, global = true, value_name = "URL")]
    notify_dlq: Option<String>,
    /// The work dead-letter queue (default: the stack's WorkDeadLetterQueueUrl).
    #[arg(long, global = true, value_name = "URL")]
    work_dlq: Option<String>,
    /// The rooms dead-letter queue (default: the stack's RoomsDeadLetterQueueUrl).
    #[arg(long, global = true, value_name = "URL")]
    rooms_dlq: Option<String>,
    /// Where re-driven events are put: an EventBridge-compatible endpoint (the local
    /// gateway, http://127.0.0.1:3001). Default: EventBridge.
    #[arg(long, global = true, value_name = "URL")]
    events_endpoint: Option<String>,
    /// The bus re-driven events are put on (default: the stack's EventBusName).
    #[arg(long, global = true, value_name = "NAME")]
    event_bus: Option<String>,
    /// AWS Region.
    #[arg(long, global = true)]
    region: Option<String>,
    /// AWS named profile.
    #[arg(long, global = true)]
    profile: Option<String>,
    /// JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// An event's delivery report: reached, gone, failed, time to the first and last fan (live
    /// while its fan-out runs).
    Event {
        /// The event's id (the on-sale event's `id`, or a room message's id).
        id: String,
        /// Wait until the report is there and every work item has finished (reading it again
        /// twice a second), then print it.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds.
        #[arg(long, default_value_t = 300, requires = "wait")]
        timeout: u64,
    },
    /// Connection records, subscriptions and the top artists, from counters (no scan).
    Stats {
        /// How many artists to list.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
        top: u16,
    },
    /// A user's connections (age, expiry, subscriptions).
    User {
        /// The user (a token's `sub`).
        sub: String,
    },
    /// Close a connection (DeleteConnection) and remove its records as a 410 would.
    Disconnect {
        /// The connection id.
        connection: String,
        /// Rooms of at most this many get `left` (the functions' PRESENCE_MAX_MEMBERS).
        #[arg(long, default_value_t = 100)]
        presence_max: u64,
    },
    /// What each dead-letter queue holds, by event; --redrive puts it back to work.
    Dlq {
        /// One queue only.
        #[arg(long, value_enum)]
        queue: Option<QueueArg>,
        /// Re-drive: work items with SQS's message move task (re-sent on a local SQS server,
        /// or with --resend), events put on the bus again.
        #[arg(long)]
        redrive: bool,
        /// Re-send work items one by one instead of the move task.
        #[arg(long, requires = "redrive")]
        resend: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QueueArg {
    Events,
    Notify,
    Work,
    Rooms,
}

impl From<QueueArg> for Kind {
    fn from(q: QueueArg) -> Self {
        match q {
            QueueArg::Events => Self::Events,
            QueueArg::Notify => Self::Notify,
            QueueArg::Work => Self::Work,
            QueueArg::Rooms => Self::Rooms,
        }
    }
}

/// A progress line on stderr, shown once an operation has taken more than a second.
struct Progress {
    started: Instant,
    shown: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            shown: false,
        }
    }

    fn update(&mut self, line: &str) {
        if self.started.elapsed() < Duration::from_secs(1) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _written = if err.is_terminal() {
            write!(err, "\r\x1b[2K{line}")
        } else {
            writeln!(err, "{line}")
        };
        self.shown = true;
    }

    fn finish(&mut self) {
        if self.shown && std::io::stderr().is_terminal() {
            let _written = writeln!(std::io::stderr());
        }
    }
}

/// Runs `work`, with a progress line naming it if it takes more than a second.
async fn timed<T>(label: &str, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        done = &mut work => done,
        () = tokio::time::sleep(Duration::from_secs(1)) => {
            let _written = writeln!(std::io::stderr(), "{label}…");
            work.await
        }
    }
}

async fn run(cli: Cli) -> Result<(Box<dyn Output>, bool), AdminError> {
    let mut queues = std::collections::BTreeMap::new();
    for (kind, url) in [
        (Kind::Events, &cli.events_dlq),
        (Kind::Notify, &cli.notify_dlq),
        (Kind::Work, &cli.work_dlq),
        (Kind::Rooms, &cli.rooms_dlq),
    ] {
        if let Some(url) = url {
            queues.insert(kind, url.clone());
        }
    }
    // Input is checked before anything is called.
    let event = match &cli.command {
        Command::Event { id, .. } => {
            Some(EventId::parse(id).map_err(|e| AdminError::Usage(format!("event {id:?}: {e}")))?)
        }
        _ => None,
    };
    let (user, connection) = match &cli.command {
        Command::User { sub } => (
            Some(UserId::parse(sub).map_err(|e| AdminError::Usage(format!("user {sub:?}: {e}")))?),
            None,
        ),
        Command::Disconnect { connection, .. } => (
            None,
            Some(
                ConnectionId::parse(connection)
                    .map_err(|e| AdminError::Usage(format!("connection {connection:?}: {e}")))?,
            ),
        ),
        _ => (None, None),
    };
    let context = Context::new(Options {
        stack: cli.stack,
        endpoint: cli.endpoint,
        table: cli.table,
        management_endpoint: cli.management_endpoint,
        sqs_endpoint: cli.sqs_endpoint,
        queues,
        events_endpoint: cli.events_endpoint,
        event_bus: cli.event_bus,
        region: cli.region,
        profile: cli.profile,
    })
    .await?;
    match cli.command {
        Command::Event { wait, timeout, .. } => {
            let id = event.ok_or_else(|| AdminError::Usage("no event".into()))?;
            let store = context.store()?;
            if !wait {
                let view = timed(
                    "reading the report",
                    commands::event(&store, &id, now_epoch_seconds()),
                )
                .await?;
                return Ok((Box::new(view), true));
            }
            let until = Instant::now() + Duration::from_secs(timeout);
            let mut progress = Progress::new();
            // A report not there yet is waited for too: `notify` opens it when the event
            // reaches it, a moment after the PutEvents.
            loop {
                let view = commands::event_if_any(&store, &id, now_epoch_seconds()).await?;
                let over = Instant::now() >= until;
                match view {
                    Some(view) if view.report.finished_all || over => {
                        progress.finish();
                        let complete = view.report.complete;
                        return Ok((Box::new(view), complete));
                    }
                    Some(view) => progress.update(&format!(
                        "event {id}: {} of {} items finished, {} delivered",
                        view.report.finished, view.report.items, view.report.delivered
                    )),
                    None if over => {
                        progress.finish();
                        return commands::event(&store, &id, now_epoch_seconds())
                            .await
                            .map(|view| (Box::new(view) as Box<dyn Output>, false));
                    }
                    None => progress.update(&format!("event {id}: no report yet")),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Command::Stats { top } => {
            let store = context.store()?;
            let stats = timed(
                "reading the counters",
                commands::stats(&store, usize::from(top)),
            )
            .await?;
            Ok((Box::new(stats), true))
        }
        Command::User { .. } => {
            let store = context.store()?;
            let user = user.ok_or_else(|| AdminError::Usage("no user".into()))?;
            let view = timed(
                "reading the user's connections",
                commands::user(&store, &user, now_epoch_seconds()),
            )
            .await?;
            Ok((Box::new(view), true))
        }
        Command::Disconnect { presence_max, .. } => {
            let id = connection.ok_or_else(|| AdminError::Usage("no connection".into()))?;
            let (store, push) = (context.store()?, context.push()?);
            let done = timed(
                "closing the connection",
                commands::disconnect(&store, &push, &id, presence_max, now_epoch_seconds()),
            )
            .await?;
            Ok((Box::new(done), true))
        }
        Command::Dlq {
            queue,
            redrive,
            resend,
        } => {
            let queues = context.dead_letters(queue.map(Kind::from))?;
            let sqs = context.sqs();
            let mut progress = Progress::new();
            let mut line = |text: &str| progress.update(text);
            let result: (Box<dyn Output>, bool) = if redrive {
                let how = Redrive {
                    events: context.events(),
                    move_task: context.real_sqs() && !resend,
                };
                let done = dlq::redrive(&sqs, &queues, &how, &mut line).await?;
                let complete = done.complete();
                (Box::new(done), complete)
            } else {
                (
                    Box::new(dlq::summarise(&sqs, &queues, &mut line).await?),
                    true,
                )
            };
            progress.finish();
            Ok(result)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match Box::pin(run(cli)).await {
        Ok((output, complete)) => {
            let text = if json {
                let mut text = serde_json::to_string_pretty(&output.json()).unwrap_or_default();
                text.push('\n');
                text
            } else {
                output.table()
            };
            let _written = std::io::stdout().lock().write_all(text.as_bytes());
            if complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            let _written = writeln!(std::io::stderr(), "marquee-admin: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

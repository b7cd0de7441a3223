//! One function process under the Lambda Runtime API, as Lambda runs it: the real binary
//! polls `GET /2018-06-01/runtime/invocation/next` on a stand-in (plain HTTP on 127.0.0.1, as
//! in Lambda, where the API is local to the execution environment) and posts its answer to
//! `…/invocation/{id}/response` (or `/error`).
//!
//! [`Process::start`] spawns the binary in a cgroup ([`Share::confine`]) and waits for its
//! first `/next`: the cold init. [`Process::invoke`] hands it one event and waits for the
//! answer: the invocation's duration runs from the moment the stand-in answers `/next` to
//! the moment the answer arrives, and its CPU time is the cgroup's `cpuacct.usage` across
//! the same span (the process is idle, blocked on `/next`, before and after).

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cgroup::Share;
use crate::BoxError;

/// The longest a start or an invocation may take before the benchmark gives up.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The deadline every invocation is given (`Lambda-Runtime-Deadline-Ms`).
const DEADLINE: Duration = Duration::from_secs(60);

/// An event for the function.
#[derive(Debug)]
struct Invocation {
    id: String,
    body: String,
}

/// What the stand-in hears from the process.
#[derive(Debug)]
enum Heard {
    /// It asked for work.
    Next(Instant),
    /// It was handed an invocation.
    Dispatched(Instant),
    /// It answered one.
    Answered { at: Instant, ok: bool, body: String },
    /// Its init failed.
    InitError(String),
}

#[derive(Debug, Clone)]
struct Api {
    pending: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    heard: mpsc::UnboundedSender<Heard>,
}

/// The answer to `/next`: waits for the benchmark's next event.
async fn next(State(api): State<Api>) -> Response {
    let _gone = api.heard.send(Heard::Next(Instant::now()));
    let invocation = api.pending.lock().await.recv().await;
    let Some(invocation) = invocation else {
        // The benchmark is done with this process: it is killed while it waits.
        return std::future::pending().await;
    };
    let deadline = std::time::SystemTime::now() + DEADLINE;
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let _gone = api.heard.send(Heard::Dispatched(Instant::now()));
    (
        [
            ("lambda-runtime-aws-request-id", invocation.id),
            ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:marquee-bench".to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned(),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        invocation.body,
    )
        .into_response()
}

async fn response(
    State(api): State<Api>,
    UrlPath(_id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let _gone = api.heard.send(Heard::Answered {
        at: Instant::now(),
        ok: true,
        body,
    });
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Api>, UrlPath(_id): UrlPath<String>, body: String) -> StatusCode {
    let _gone = api.heard.send(Heard::Answered {
        at: Instant::now(),
        ok: false,
        body,
    });
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Api>, body: String) -> StatusCode {
    let _gone = api.heard.send(Heard::InitError(body));
    StatusCode::ACCEPTED
}

/// One invocation's (or one cold init's) measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Invoked {
    /// From handing out the event to the answer.
    pub(crate) duration: Duration,
    /// CPU time of the process's cgroup over the invocation, in nanoseconds.
    pub(crate) cpu_nanos: u64,
}

/// A function process and its Runtime API stand-in; killed (by its PID) when dropped.
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    invocations: mpsc::UnboundedSender<Invocation>,
    heard: mpsc::UnboundedReceiver<Heard>,
    server: JoinHandle<()>,
    count: u64,
}

impl Drop for Process {
    fn drop(&mut self) {
        // `kill_on_drop` kills the child by its PID; tokio reaps it.
        self.server.abort();
    }
}

impl Process {
    /// Starts `binary` with exactly `env` in `share`, its output appended to `log`; returns
    /// it with its cold init (process start to its first `/next`: wall time, and the
    /// cgroup's CPU time over it).
    pub(crate) async fn start(
        binary: &Path,
        env: &[(String, String)],
        share: &Share,
        log: &Path,
    ) -> Result<(Self, Invoked), BoxError> {
        let (invocations, pending) = mpsc::unbounded_channel();
        let (heard_tx, heard) = mpsc::unbounded_channel();
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Api {
                pending: Arc::new(Mutex::new(pending)),
                heard: heard_tx,
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("lambda: the Runtime API stand-in stopped: {err}");
            }
        });

        let output = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(output.try_clone()?))
            .stderr(Stdio::from(output))
            .kill_on_drop(true);
        share.confine(&mut command)?;
        let cpu_before = share.usage_nanos()?;
        let started = Instant::now();
        let child = command.spawn()?;
        drop(command);
        let mut process = Self {
            child,
            invocations,
            heard,
            server,
            count: 0,
        };
        let duration = process.wait_next().await? - started;
        let cpu_nanos = share.usage_nanos()?.saturating_sub(cpu_before);
        Ok((
            process,
            Invoked {
                duration,
                cpu_nanos,
            },
        ))
    }

    /// Waits for the process's next `/next`.
    async fn wait_next(&mut self) -> Result<Instant, BoxError> {
        match self.hear().await? {
            Heard::Next(at) => Ok(at),
            Heard::InitError(body) => Err(format!("init failed: {body}").into()),
            other => Err(format!("expected a request for work, heard {other:?}").into()),
        }
    }

    async fn hear(&mut self) -> Result<Heard, BoxError> {
        tokio::select! {
            heard = tokio::time::timeout(TIMEOUT, self.heard.recv()) => match heard {
                Ok(Some(heard)) => Ok(heard),
                Ok(None) => Err("the Runtime API stand-in stopped".into()),
                Err(_) => Err(format!("nothing from the function within {TIMEOUT:?}").into()),
            },
            status = self.child.wait() => Err(format!("the function exited: {}", status?).into()),
        }
    }

    /// Kills the process (by its PID) and reaps it.
    pub(crate) async fn stop(mut self) -> Result<(), BoxError> {
        self.child.kill().await?;
        Ok(())
    }

    /// Hands the process `event`, waits for its answer; `share` is its cgroup.
    pub(crate) async fn invoke(
        &mut self,
        event: String,
        share: &Share,
    ) -> Result<Invoked, BoxError> {
        self.count += 1;
        let before = share.usage_nanos()?;
        self.invocations.send(Invocation {
            id: format!("bench-invocation-{}", self.count),
            body: event,
        })?;
        let dispatched = match self.hear().await? {
            Heard::Dispatched(at) => at,
            other => return Err(format!("expected the event to be taken, heard {other:?}").into()),
        };
        let (at, ok, body) = match self.hear().await? {
            Heard::Answered { at, ok, body } => (at, ok, body),
            other => return Err(format!("expected an answer, heard {other:?}").into()),
        };
        let after = share.usage_nanos()?;
        if !ok {
            return Err(format!("the invocation failed: {body}").into());
        }
        // Its next request for work: the process is idle again.
        self.wait_next().await?;
        Ok(Invoked {
            duration: at - dispatched,
            cpu_nanos: after.saturating_sub(before),
        })
    }
}

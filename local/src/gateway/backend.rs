//! Who runs the routes: the very handlers the Lambda binaries run, in process (on the embedded
//! store or DynamoDB Local), or the real binaries under `cargo lambda watch`, through the Lambda
//! Invoke API.

use marquee::report::{RecordingEvents, SharedEvents};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsBatchResponse;
use marquee::budget::{Lane, SharedBudget};
use marquee::function::Function;
use marquee::lambda::{
    ConnectDeps, DeliverDeps, DisconnectDeps, NotifyDeps, SubscribeDeps, connect, deliver,
    disconnect, notify, subscribe,
};
use marquee::queue::Inbox;
use marquee::queue::mapping::poll_forever;
use marquee::queue::memory::MemoryQueue;
use marquee::queue::sqs::SqsQueue;
use marquee::store::Store;
use marquee::store::dynamo::DynamoStore;
use marquee::store::memory::MemoryStore;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::config::LambdaNames;
use super::push::GatewayPush;
use crate::http::JsonClient;
use marquee::store::ConnectionStore;

/// How long a received work item stays hidden locally before it is delivered again (in AWS:
/// six times `deliver`'s timeout).
const LOCAL_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// Receives of one work item before it is dead-lettered (the template's `maxReceiveCount`).
const LOCAL_MAX_RECEIVES: u32 = 5;
/// The in-process `deliver`'s deadline, counted from each invocation's start: the template's
/// `DeliverFunction` `Timeout` (a test compares them), so a long item stops short of it and
/// hands on its rest here as in AWS, instead of running on with no deadline.
pub const DELIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// A WebSocket route, and the function that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `$connect`
    Connect,
    /// `$disconnect`
    Disconnect,
    /// `subscribe`, `unsubscribe`, `ping`, `publish`, `$default`
    Subscribe,
}

impl Route {
    /// The binary (and so the function name under `cargo lambda watch`).
    #[must_use]
    pub fn function(self) -> &'static str {
        match self {
            Self::Connect => "marquee-connect",
            Self::Disconnect => "marquee-disconnect",
            Self::Subscribe => "marquee-subscribe",
        }
    }
}

/// The notify function's name.
pub const NOTIFY_FUNCTION: &str = "marquee-notify";
/// The deliver function's name.
pub const DELIVER_FUNCTION: &str = "marquee-deliver";

/// A route or notify invocation that did not produce a response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The event did not have the shape the handler takes.
    #[error("the event does not fit the handler: {0}")]
    Event(#[from] serde_json::Error),
    /// The function failed (its error type and message).
    #[error("{function} failed: {message}")]
    Function {
        /// Which function.
        function: &'static str,
        /// What it said.
        message: String,
    },
    /// The Lambda endpoint could not be reached.
    #[error("could not invoke {function} at {endpoint}")]
    Unreachable {
        /// Which function.
        function: &'static str,
        /// Where.
        endpoint: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The handlers' dependencies over one store, and the fan-out pipeline: `notify` sends work
/// items to an in-process queue, and `deliver_workers` pollers run `deliver` on them, as
/// Lambda's SQS event source does in AWS.
#[derive(Debug)]
pub struct InProcess<S> {
    connect: ConnectDeps<S>,
    disconnect: DisconnectDeps<S, GatewayPush>,
    subscribe: SubscribeDeps<S, GatewayPush, MemoryQueue>,
    notify: NotifyDeps<S, GatewayPush, MemoryQueue>,
    /// Every `FanoutCompleted` the in-process functions sent: the local EventBridge.
    completed: RecordingEvents,
    workers: Vec<JoinHandle<()>>,
}

impl<S> Drop for InProcess<S> {
    fn drop(&mut self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

impl<S: Store + Clone + 'static> InProcess<S> {
    /// Handlers over `store`, posting through `push` within `budget`, with `deliver_workers`
    /// work queue pollers; `FanoutCompleted` goes to `completed`.
    #[must_use]
    pub fn new(
        store: &S,
        budget: SharedBudget,
        push: &GatewayPush,
        verifier: marquee::lambda::keyring::Keyring,
        config: &marquee::config::Config,
        deliver_workers: usize,
        completed: &RecordingEvents,
    ) -> Self {
        // Room messages' items have a queue of their own, with workers of their own, as in
        // AWS (RoomsQueue, a second event source of DeliverFunction).
        let rooms = MemoryQueue::new(LOCAL_VISIBILITY_TIMEOUT, LOCAL_MAX_RECEIVES);
        let queue =
            MemoryQueue::new(LOCAL_VISIBILITY_TIMEOUT, LOCAL_MAX_RECEIVES).with_rooms(rooms);
        let completed = completed.clone();
        let events: SharedEvents = Arc::new(completed.clone());
        let deliver = Arc::new(DeliverDeps::new(
            config,
            store.clone(),
            push.clone(),
            queue.clone(),
            Arc::clone(&budget),
            Arc::clone(&events),
        ));
        let rooms_workers =
            usize::try_from(marquee::config::DEFAULT_ROOMS_DELIVER_MAX_CONCURRENCY).unwrap_or(1);
        let workers = std::iter::repeat_n(Lane::Sale, deliver_workers.max(1))
            .chain(std::iter::repeat_n(Lane::Rooms, rooms_workers))
            .map(|lane| tokio::spawn(deliver_worker(Arc::clone(&deliver), lane)))
            .collect();
        Self {
            workers,
            completed,
            connect: ConnectDeps::new(config, store.clone(), verifier),
            disconnect: DisconnectDeps::new(config, store.clone(), push.clone()),
            subscribe: SubscribeDeps::new(
                config,
                store.clone(),
                push.clone(),
                queue.clone(),
                Arc::clone(&budget),
                Arc::clone(&events),
            ),
            notify: NotifyDeps::new(config, store.clone(), push.clone(), queue, budget, events),
        }
    }

    /// Every `FanoutCompleted` sent so far, oldest first.
    #[must_use]
    pub fn completed(&self) -> Vec<marquee::report::FanoutCompleted> {
        self.completed.sent()
    }

    async fn route(&self, route: Route, event: Value) -> Result<u16, InvokeError> {
        let request: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event)?;
        let response = match route {
            Route::Connect => connect::handle(&self.connect, request).await,
            Route::Disconnect => disconnect::handle(&self.disconnect, request).await,
            Route::Subscribe => subscribe::handle(&self.subscribe, request).await,
        };
        Ok(status_of(&response))
    }

    async fn notify(&self, event: Value) -> Result<Value, InvokeError> {
        let event: EventBridgeEvent<Value> = serde_json::from_value(event)?;
        match notify::handle(&self.notify, event, None).await {
            Ok(summary) => Ok(serde_json::to_value(summary)?),
            Err(failure) => Err(InvokeError::Function {
                function: NOTIFY_FUNCTION,
                message: format!("{}: {failure}", failure.error_type()),
            }),
        }
    }
}

/// One poller of the SQS work queue, invoking `marquee-deliver` with each item until the
/// gateway stops.
fn forward_work(forwarder: LambdaForwarder, queue: SqsQueue) -> BoxFuture<'static, ()> {
    // Lambda's event source polls the queue with the function's role.
    Box::pin(Function::Deliver.run(async move {
        poll_forever(&queue, |event| async {
            let answer = forwarder
                .invoke(DELIVER_FUNCTION, &serde_json::to_value(event)?)
                .await?;
            Ok::<SqsBatchResponse, InvokeError>(serde_json::from_value(answer)?)
        })
        .await;
    }))
}

/// One poller of `lane`'s queue (the work queue, or the rooms'), running `deliver` on each
/// item until the gateway stops.
fn deliver_worker<S: Store + 'static>(
    deps: Arc<DeliverDeps<S, GatewayPush, MemoryQueue>>,
    lane: Lane,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        poll_forever(deps.queue.lane(lane), |event| async {
            let deadline = Some(tokio::time::Instant::now() + DELIVER_TIMEOUT);
            Ok::<_, std::convert::Infallible>(deliver::handle(&*deps, event, deadline).await)
        })
        .await;
    })
}

fn status_of(response: &ApiGatewayProxyResponse) -> u16 {
    u16::try_from(response.status_code).unwrap_or(500)
}

/// Forwards invocations to a Lambda Invoke API (`cargo lambda watch`). With a work queue, it
/// also plays the queue's event source: pollers receive work items and invoke
/// `marquee-deliver` with them, deleting what it did not report failed.
#[derive(Debug, Clone)]
pub struct LambdaForwarder {
    endpoint: String,
    names: LambdaNames,
    client: JsonClient,
    /// Held only so the pollers stop with the last clone.
    _pollers: Arc<Pollers>,
}

/// Poller tasks, stopped with the last clone of their forwarder.
#[derive(Debug, Default)]
struct Pollers(Vec<JoinHandle<()>>);

impl Drop for Pollers {
    fn drop(&mut self) {
        for poller in &self.0 {
            poller.abort();
        }
    }
}

impl LambdaForwarder {
    /// Forwards to `endpoint`, e.g. `http://127.0.0.1:9000`, where the functions go by `names`.
    #[must_use]
    pub fn new(endpoint: &str, names: LambdaNames) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            names,
            client: JsonClient::default(),
            _pollers: Arc::default(),
        }
    }

    /// Forwards to `endpoint`, and runs `workers` pollers of `queue` that invoke
    /// `marquee-deliver` (as Lambda's SQS event source does in AWS).
    #[must_use]
    pub fn with_work_queue(
        endpoint: &str,
        names: LambdaNames,
        queue: &SqsQueue,
        workers: usize,
    ) -> Self {
        let plain = Self::new(endpoint, names);
        let pollers = (0..workers.max(1))
            .map(|_| tokio::spawn(forward_work(plain.clone(), queue.clone())))
            .collect();
        Self {
            _pollers: Arc::new(Pollers(pollers)),
            ..plain
        }
    }

    async fn invoke(&self, function: &'static str, event: &Value) -> Result<Value, InvokeError> {
        let url = format!(
            "{}/2015-03-31/functions/{}/invocations",
            self.endpoint,
            self.names.of(function)
        );
        let answer = self
            .client
            .post(&url, event)
            .await
            .map_err(|e| InvokeError::Unreachable {
                function,
                endpoint: self.endpoint.clone(),
                source: Box::new(e),
            })?;
        if answer.headers.contains_key("x-amz-function-error") || !answer.status.is_success() {
            return Err(InvokeError::Function {
                function,
                message: String::from_utf8_lossy(&answer.body).into_owned(),
            });
        }
        Ok(serde_json::from_slice(&answer.body)?)
    }
}

/// Where the gateway sends its routes.
#[derive(Debug)]
pub enum Backend {
    /// In process, on the embedded in-memory store.
    Memory(InProcess<MemoryStore>),
    /// In process, on DynamoDB (Local).
    Dynamo(InProcess<DynamoStore>),
    /// The real binaries behind a Lambda Invoke API.
    Lambda(LambdaForwarder),
}

impl Backend {
    /// Runs a WebSocket route; returns the HTTP status the function answered.
    ///
    /// # Errors
    /// [`InvokeError`] when the function could not be run or failed.
    pub fn route(&self, route: Route, event: Value) -> BoxFuture<'_, Result<u16, InvokeError>> {
        // Boxed (once per route call): spawned tasks cannot prove `Send` for the handlers'
        // generic futures otherwise (a known limitation of the compiler).
        Box::pin(async move {
            match self {
                Self::Memory(handlers) => handlers.route(route, event).await,
                Self::Dynamo(handlers) => handlers.route(route, event).await,
                Self::Lambda(forwarder) => {
                    let response: ApiGatewayProxyResponse =
                        serde_json::from_value(forwarder.invoke(route.function(), &event).await?)?;
                    Ok(status_of(&response))
                }
            }
        })
    }

    /// Runs `notify` for an EventBridge event; returns its result.
    ///
    /// # Errors
    /// [`InvokeError`] when the function could not be run or failed.
    pub fn notify(&self, event: Value) -> BoxFuture<'_, Result<Value, InvokeError>> {
        Box::pin(async move {
            match self {
                Self::Memory(handlers) => handlers.notify(event).await,
                Self::Dynamo(handlers) => handlers.notify(event).await,
                Self::Lambda(forwarder) => forwarder.invoke(NOTIFY_FUNCTION, &event).await,
            }
        })
    }

    /// Whether the store holds a live record of connection `id` (`None` when the routes run
    /// elsewhere, behind a Lambda endpoint).
    ///
    /// # Errors
    /// The store's error.
    pub async fn has_record(&self, id: &str) -> Result<Option<bool>, InvokeError> {
        let Ok(id) = marquee::domain::ConnectionId::parse(id) else {
            return Ok(Some(false));
        };
        let now = marquee::domain::now_epoch_seconds();
        let state = match self {
            Self::Memory(handlers) => handlers.connect.store.connection_state(&id, now).await,
            Self::Dynamo(handlers) => handlers.connect.store.connection_state(&id, now).await,
            Self::Lambda(_) => return Ok(None),
        };
        state
            .map(|s| Some(s.is_some()))
            .map_err(|e| InvokeError::Function {
                function: "store",
                message: e.to_string(),
            })
    }

    /// A short name for logs.
    #[must_use]
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Memory(_) => "in process, embedded in-memory store",
            Self::Dynamo(_) => "in process, DynamoDB",
            Self::Lambda(_) => "forwarded to a Lambda Invoke API",
        }
    }
}

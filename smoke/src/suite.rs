//! The steps, in order. A step that the rest depends on stops the run when it fails (the rest
//! is reported as not run); an unreachable endpoint stops it at once. Cleanup always runs.

use std::future::Future;
use std::time::{Duration, Instant};

use marquee::auth::{Secret, TokenClaims, mint};
use marquee::domain::{Artist, ArtistKey, now_epoch_seconds};
use serde_json::{Value, json};

use crate::aws::{self, Index, IndexError, Publisher};
use crate::report::{Report, Status, Step, human};
use crate::ws::{self, Fan, Handshake, WsUrl};
use crate::{Endpoint, SecretSource, Target, Timeouts, seconds, step};

/// How long tokens minted by the suite live.
const TOKEN_LIFETIME_SECONDS: i64 = 600;
/// How often the table is looked at while waiting for `$disconnect`.
const INDEX_POLL: Duration = Duration::from_millis(500);

/// A step that held: its value, what was seen, and optionally a latency more telling than
/// the step's duration (a delivery's).
struct Passed<T> {
    value: T,
    status: Status,
    detail: String,
    latency: Option<Duration>,
}

impl<T> Passed<T> {
    fn new(value: T, detail: impl Into<String>) -> Self {
        Self {
            value,
            status: Status::Pass,
            detail: detail.into(),
            latency: None,
        }
    }

    fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }
}

impl Passed<()> {
    fn skipped(detail: impl Into<String>) -> Self {
        Self {
            status: Status::Skip,
            ..Self::new((), detail)
        }
    }
}

/// A step that failed; `halt` stops the run even for a step the rest does not need (the
/// endpoint cannot be reached at all).
struct Failure {
    detail: String,
    halt: bool,
}

impl From<String> for Failure {
    fn from(detail: String) -> Self {
        Self {
            detail,
            halt: false,
        }
    }
}

impl From<&str> for Failure {
    fn from(detail: &str) -> Self {
        Self::from(detail.to_owned())
    }
}

impl Failure {
    fn halt(detail: String) -> Self {
        Self { detail, halt: true }
    }
}

type Outcome<T> = Result<Passed<T>, Failure>;

/// Records steps as they are decided.
struct Suite<'a> {
    steps: Vec<Step>,
    on_step: &'a mut (dyn FnMut(&Step) + Send),
    /// The step whose failure stopped the run.
    halted: Option<&'static str>,
    /// The longest any one step may take, whatever it waits for.
    step_limit: Duration,
}

impl Suite<'_> {
    fn record(&mut self, name: &'static str, status: Status, latency: Duration, detail: String) {
        let step = Step {
            name,
            status,
            latency,
            detail,
        };
        (self.on_step)(&step);
        self.steps.push(step);
    }

    /// Runs one step unless the run was stopped. `needed`: the rest depends on it, so its
    /// failure stops the run.
    async fn check<T>(
        &mut self,
        name: &'static str,
        needed: bool,
        work: impl Future<Output = Outcome<T>>,
    ) -> Option<T> {
        if let Some(halted) = self.halted {
            self.record(
                name,
                Status::Skip,
                Duration::ZERO,
                format!("not run: \"{halted}\" failed"),
            );
            return None;
        }
        let started = Instant::now();
        let outcome = match tokio::time::timeout(self.step_limit, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::halt(format!(
                "the step took longer than {}",
                seconds(self.step_limit)
            ))),
        };
        match outcome {
            Ok(passed) => {
                let latency = passed.latency.unwrap_or_else(|| started.elapsed());
                self.record(name, passed.status, latency, passed.detail);
                Some(passed.value)
            }
            Err(failure) => {
                self.record(name, Status::Fail, started.elapsed(), failure.detail);
                if needed || failure.halt {
                    self.halted = Some(name);
                }
                None
            }
        }
    }

    /// Records every step of `plan` that did not run as skipped.
    fn skip_rest(&mut self, plan: &[&'static str]) {
        let halted = self.halted.unwrap_or("an earlier step");
        for &name in plan {
            if !self.steps.iter().any(|s| s.name == name) {
                self.record(
                    name,
                    Status::Skip,
                    Duration::ZERO,
                    format!("not run: \"{halted}\" failed"),
                );
            }
        }
    }
}

/// Everything the steps need, once the target is resolved.
struct Resolved {
    url: WsUrl,
    secret: Secret,
    audience: String,
    publisher: Publisher,
    index: Option<Index>,
    /// Where a local gateway serves `FanoutCompleted` (`GET /events/<id>`), for a loopback URL.
    gateway: Option<String>,
    timeouts: Timeouts,
}

/// The run's own names: artists and users no one else has.
struct Names {
    run: String,
    artist: String,
    other_artist: String,
}

impl Names {
    fn new() -> Self {
        let run: String = std::iter::repeat_with(|| fastrand::alphanumeric().to_ascii_lowercase())
            .take(8)
            .collect();
        Self {
            artist: format!("Smoke Test {run} A"),
            other_artist: format!("Smoke Test {run} B"),
            run,
        }
    }

    fn user(&self, fan: &str) -> String {
        format!("smoke-{}-{fan}", self.run)
    }
}

/// The suite's connections: `a` and `b` from the start, `c` after the close.
#[derive(Default)]
struct Fans {
    a: Option<Fan>,
    b: Option<Fan>,
    c: Option<Fan>,
}

pub(crate) async fn run(target: Target, on_step: &mut (dyn FnMut(&Step) + Send)) -> Report {
    let started = Instant::now();
    // wss:// uses rustls with the AWS SDK's provider; installing it twice is harmless.
    let _installed = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let t = target.timeouts;
    let mut suite = Suite {
        steps: Vec::new(),
        on_step,
        halted: None,
        step_limit: t.connect * 2 + t.reply * 4 + t.aws * 3 + t.delivery * 2 + t.quiet * 2,
    };
    let mut plan = match &target.endpoint {
        Endpoint::Stack(_) => vec![step::STACK, step::SECRET],
        Endpoint::Url {
            secret: SecretSource::SecretsManager(_),
            ..
        } => vec![step::TARGET, step::SECRET],
        Endpoint::Url { .. } => vec![step::TARGET],
    };
    plan.extend([
        step::MISSING_TOKEN,
        step::BAD_TOKEN,
        step::VALID_TOKEN,
        step::SUBSCRIBE,
        step::SECOND_FAN,
        step::UNKNOWN_ACTION,
        step::DELIVERED_ONCE,
        step::REPORT,
        step::UNSUBSCRIBE,
        step::UNSUBSCRIBE_STOPS,
        step::CLOSE,
        step::DISCONNECT_RECORDS,
        step::AFTER_CLOSE,
    ]);
    let names = Names::new();
    let mut fans = Fans::default();
    if let Some(resolved) = Box::pin(resolve(&mut suite, &target)).await {
        Box::pin(exercise(&mut suite, &resolved, &names, &mut fans)).await;
    }
    suite.skip_rest(&plan);
    cleanup(&mut suite, &mut fans, &t).await;
    Report {
        steps: suite.steps,
        elapsed: started.elapsed(),
    }
}

/// The URL, the key, where events go and the table: from the stack, or from the target.
async fn resolve(suite: &mut Suite<'_>, target: &Target) -> Option<Resolved> {
    let t = target.timeouts;
    let rule = |stack_source: Option<String>, stack_type: Option<String>| {
        (
            target
                .event_source
                .clone()
                .or(stack_source)
                .unwrap_or_else(|| marquee::report::DEFAULT_EVENT_SOURCE.into()),
            target
                .detail_type
                .clone()
                .or(stack_type)
                .unwrap_or_else(|| marquee::lambda::notify::DEFAULT_ON_SALE_DETAIL_TYPE.into()),
        )
    };
    match &target.endpoint {
        Endpoint::Stack(name) => {
            let (sdk, info, url) = suite
                .check(step::STACK, true, async {
                    let sdk = aws::load(&target.aws, false, &t)
                        .await
                        .map_err(Failure::halt)?;
                    let info = aws::describe_stack(&sdk, name, &t)
                        .await
                        .map_err(Failure::halt)?;
                    let url = WsUrl::parse(&info.url).map_err(Failure::halt)?;
                    let detail = format!(
                        "{name} ({}) in {}: {}, bus {}",
                        info.status,
                        aws::region(&sdk),
                        url.as_str(),
                        info.bus
                    );
                    Ok(Passed::new((sdk, info, url), detail))
                })
                .await?;
            let secret = suite
                .check(step::SECRET, true, async {
                    let secret = aws::read_secret(&sdk, &info.secret_arn, &t).await?;
                    Ok(Passed::new(
                        secret,
                        "read the current version of the stack's TokenSecretArn",
                    ))
                })
                .await?;
            let events_endpoint = target.events_endpoint.as_deref();
            let publisher = Publisher::new(
                &sdk,
                events_endpoint,
                Some(target.event_bus.clone().unwrap_or(info.bus)),
                rule(info.source, info.detail_type),
                &t,
            );
            Some(Resolved {
                url,
                secret,
                audience: target
                    .audience
                    .clone()
                    .or(info.audience)
                    .unwrap_or_else(|| marquee::config::DEFAULT_AUDIENCE.into()),
                publisher,
                index: info.table.map(|table| Index::new(&sdk, table, None)),
                gateway: None,
                timeouts: t,
            })
        }
        Endpoint::Url { url, secret } => {
            let (url, publisher, index) = suite
                .check(step::TARGET, true, async {
                    let url = WsUrl::parse(url).map_err(Failure::halt)?;
                    let events_endpoint = target
                        .events_endpoint
                        .clone()
                        .or_else(|| url.is_loopback().then(|| url.http_origin()));
                    let local = events_endpoint.is_some()
                        || target.table.as_ref().is_some_and(|t| t.endpoint.is_some());
                    let sdk = aws::load(&target.aws, local, &t)
                        .await
                        .map_err(Failure::halt)?;
                    let publisher = Publisher::new(
                        &sdk,
                        events_endpoint.as_deref(),
                        target.event_bus.clone(),
                        rule(None, None),
                        &t,
                    );
                    let events = publisher.describe(events_endpoint.as_deref());
                    let detail = match events_endpoint {
                        Some(_) => format!("{}, {events}", url.as_str()),
                        None => format!("{}, {events} in {}", url.as_str(), aws::region(&sdk)),
                    };
                    let index = target.table.as_ref().map(|table| {
                        Index::new(&sdk, table.name.clone(), table.endpoint.as_deref())
                    });
                    Ok(Passed::new((url, publisher, index), detail))
                })
                .await?;
            let secret = match secret {
                SecretSource::Key(secret) => secret.clone(),
                SecretSource::SecretsManager(id) => {
                    suite
                        .check(step::SECRET, true, async {
                            let sdk = aws::load(&target.aws, false, &t)
                                .await
                                .map_err(Failure::halt)?;
                            let secret = aws::read_secret(&sdk, id, &t).await?;
                            Ok(Passed::new(secret, "read the current version"))
                        })
                        .await?
                }
            };
            Some(Resolved {
                gateway: url.is_loopback().then(|| url.http_origin()),
                url,
                secret,
                audience: target
                    .audience
                    .clone()
                    .unwrap_or_else(|| marquee::config::DEFAULT_AUDIENCE.into()),
                publisher,
                index,
                timeouts: t,
            })
        }
    }
}

/// The checks proper. Returns early (`None`) once the run is stopped; the caller reports the
/// rest as not run and cleans up.
async fn exercise(
    suite: &mut Suite<'_>,
    r: &Resolved,
    names: &Names,
    fans: &mut Fans,
) -> Option<()> {
    let t = &r.timeouts;
    let (x, y) = (names.artist.as_str(), names.other_artist.as_str());
    let token = |secret: &Secret, fan: &str| -> Result<String, Failure> {
        let now = now_epoch_seconds();
        mint(
            secret,
            &TokenClaims {
                sub: names.user(fan),
                aud: r.audience.clone(),
                iat: now,
                exp: now + TOKEN_LIFETIME_SECONDS,
                nbf: None,
                artists: Some(vec![x.to_owned(), y.to_owned()]),
                subscribe: None,
                publish: None,
            },
        )
        .map_err(|e| Failure::from(format!("could not mint a token: {e}")))
    };

    suite
        .check(step::MISSING_TOKEN, false, refused(r, None))
        .await;
    suite
        .check(step::BAD_TOKEN, false, async {
            let key: String = std::iter::repeat_with(fastrand::alphanumeric)
                .take(48)
                .collect();
            let wrong = Secret::new(key).map_err(|e| Failure::from(e.to_string()))?;
            refused(r, Some(token(&wrong, "bad")?)).await
        })
        .await;
    suite
        .check(step::VALID_TOKEN, true, async {
            let fan = connect(r, &token(&r.secret, "a")?, "the first fan").await?;
            fans.a = Some(fan);
            Ok(Passed::new((), "101 Switching Protocols"))
        })
        .await?;
    suite
        .check(step::SUBSCRIBE, true, async {
            subscribe(need(&mut fans.a)?, x, t).await?;
            Ok(Passed::new((), format!("subscribed to {x:?}")))
        })
        .await?;
    suite
        .check(step::SECOND_FAN, true, async {
            fans.b = Some(connect(r, &token(&r.secret, "b")?, "the second fan").await?);
            subscribe(need(&mut fans.b)?, y, t).await?;
            Ok(Passed::new((), format!("connected, subscribed to {y:?}")))
        })
        .await?;
    suite
        .check(step::UNKNOWN_ACTION, false, async {
            let a = need(&mut fans.a)?;
            let reply = a
                .request(&json!({"action": "smoke-no-such-action"}), t.reply)
                .await?;
            if text(&reply, "/type") == Some("error")
                && text(&reply, "/code") == Some("unknown_action")
            {
                Ok(Passed::new((), "error frame unknown_action"))
            } else {
                Err(format!(
                    "expected an unknown_action error frame, got {}",
                    ws::clip(&reply.to_string())
                )
                .into())
            }
        })
        .await;
    let event = suite
        .check(step::DELIVERED_ONCE, true, async {
            let published = Instant::now();
            let ids = r.publisher.publish(&[x], &names.run).await?;
            let id = ids.first().ok_or("PutEvents returned no event id")?;
            let a = fans.a.as_mut().ok_or("the first fan is gone")?;
            let b = fans.b.as_mut().ok_or("the second fan is gone")?;
            await_notification(a, id, x, &names.run, t.delivery).await?;
            let took = published.elapsed();
            let (twice, elsewhere) = tokio::join!(a.silence(t.quiet), b.silence(t.quiet));
            twice.map_err(|f| {
                format!(
                    "delivered in {}, then a second frame arrived: {f}",
                    human(took)
                )
            })?;
            elsewhere.map_err(|f| format!("the subscriber of another artist got a frame: {f}"))?;
            Ok(Passed::new(
                id.clone(),
                format!(
                    "notification {id} (latency: PutEvents to frame); no duplicate, nothing \
                     for the other artist in {}",
                    seconds(t.quiet)
                ),
            )
            .latency(took))
        })
        .await?;
    suite
        .check(step::REPORT, false, delivery_report(r, &event))
        .await;
    suite
        .check(step::UNSUBSCRIBE, true, async {
            unsubscribe(need(&mut fans.a)?, x, t).await?;
            Ok(Passed::new((), format!("unsubscribed from {x:?}")))
        })
        .await?;
    suite
        .check(step::UNSUBSCRIBE_STOPS, true, async {
            // A control subscriber of the same artist proves the event was fanned out.
            let b = fans.b.as_mut().ok_or("the second fan is gone")?;
            subscribe(b, x, t)
                .await
                .map_err(|f| format!("the control subscriber could not subscribe: {}", f.detail))?;
            let published = Instant::now();
            let ids = r.publisher.publish(&[x], &names.run).await?;
            let id = ids.first().ok_or("PutEvents returned no event id")?;
            await_notification(b, id, x, &names.run, t.delivery)
                .await
                .map_err(|f| {
                    format!(
                        "the control subscriber: {} (so this proves nothing)",
                        f.detail
                    )
                })?;
            let took = published.elapsed();
            let a = fans.a.as_mut().ok_or("the first fan is gone")?;
            a.silence(t.quiet)
                .await
                .map_err(|f| format!("the unsubscribed fan still got: {f}"))?;
            Ok(Passed::new(
                (),
                format!(
                    "nothing in {} for the unsubscribed fan; a control subscriber of the artist \
                     got the event (latency: PutEvents to frame)",
                    seconds(t.quiet)
                ),
            )
            .latency(took))
        })
        .await?;
    suite
        .check(step::CLOSE, true, async {
            let a = fans.a.take().ok_or("the first fan is gone")?;
            let b = fans.b.take().ok_or("the second fan is gone")?;
            let (a, b) = tokio::join!(a.close(t.reply), b.close(t.reply));
            let ends = [
                a.map_err(|e| format!("the first fan: {e}"))?,
                b.map_err(|e| format!("the second fan: {e}"))?,
            ];
            let detail = match ends {
                [Some(a), Some(b)] => {
                    format!("both sockets closed with a close handshake (server codes {a}, {b})")
                }
                _ => "both sockets closed; the server ended the connection without echoing \
                      the close frame"
                    .to_owned(),
            };
            Ok(Passed::new((), detail))
        })
        .await?;
    suite
        .check(step::DISCONNECT_RECORDS, false, async {
            let Some(index) = &r.index else {
                return Ok(Passed::skipped(
                    "not checked: no table to read (a stack's TableName output enables it; \
                     the local gateway has no API for it)",
                ));
            };
            let keys = [artist_key(x)?, artist_key(y)?];
            disconnect_cleaned(index, &keys, t).await
        })
        .await;
    suite
        .check(step::AFTER_CLOSE, true, async {
            fans.c = Some(connect(r, &token(&r.secret, "c")?, "a new fan").await?);
            let c = need(&mut fans.c)?;
            subscribe(c, x, t).await?;
            // Both artists: any records the closed sockets left behind meet the fan-out here.
            let published = Instant::now();
            let ids = r.publisher.publish(&[x, y], &names.run).await?;
            let id = ids.first().ok_or("PutEvents returned no event id")?;
            await_notification(c, id, x, &names.run, t.delivery).await?;
            let took = published.elapsed();
            Ok(Passed::new(
                (),
                "PutEvents accepted both artists' events; a new subscriber got its notification \
                 (latency: PutEvents to frame)",
            )
            .latency(took))
        })
        .await?;
    Some(())
}

/// A handshake that must be refused with 401.
async fn refused(r: &Resolved, token: Option<String>) -> Outcome<()> {
    match ws::handshake(
        &r.url,
        token.as_deref(),
        "a refused fan",
        r.timeouts.connect,
    )
    .await
    {
        Err(unreachable) => Err(Failure::halt(unreachable)),
        Ok(Handshake::Refused(401)) => Ok(Passed::new((), "401 at the handshake")),
        Ok(Handshake::Refused(status)) => {
            Err(format!("refused with {status}, expected 401{}", status_hint(status)).into())
        }
        Ok(Handshake::Open(fan)) => {
            let _closed = fan.close(r.timeouts.reply).await;
            Err("the handshake was ACCEPTED: $connect does not check tokens".into())
        }
    }
}

/// A handshake that must succeed.
async fn connect(r: &Resolved, token: &str, label: &'static str) -> Result<Fan, Failure> {
    match ws::handshake(&r.url, Some(token), label, r.timeouts.connect).await {
        Ok(Handshake::Open(fan)) => Ok(*fan),
        Ok(Handshake::Refused(status)) => {
            Err(format!("{label} was refused with {status}{}", status_hint(status)).into())
        }
        Err(unreachable) => Err(Failure::halt(unreachable)),
    }
}

/// What a refusal with `status` usually means.
fn status_hint(status: u16) -> &'static str {
    match status {
        401 => {
            ": the token key does not match the endpoint's (the stack's TokenSecretArn, or \
             marquee-local's --secret), or the audience differs"
        }
        403 => {
            ": $connect found the token authentic but granting nothing, or API Gateway refused \
             the request (wrong stage in the URL?)"
        }
        429 => ": throttled ($connect's rate limit)",
        500..=599 => {
            ": API Gateway could not run $connect (its function failed or may not be invoked: \
             see marquee-connect's logs)"
        }
        _ => "",
    }
}

fn need(fan: &mut Option<Fan>) -> Result<&mut Fan, Failure> {
    fan.as_mut()
        .ok_or_else(|| Failure::from("the connection is gone"))
}

/// Subscribes `fan` to `artist` and checks the acknowledgement.
async fn subscribe(fan: &mut Fan, artist: &str, t: &Timeouts) -> Result<(), Failure> {
    let reply = fan
        .request(&json!({"action": "subscribe", "artists": [artist]}), t.reply)
        .await
        .map_err(|e| format!("{e} (is the subscribe route deployed, and may its function post to the Management API?)"))?;
    expect_ack(&reply, "subscribed", artist)?;
    fan.artists.push(artist.to_owned());
    Ok(())
}

/// Unsubscribes `fan` from `artist` and checks the acknowledgement.
async fn unsubscribe(fan: &mut Fan, artist: &str, t: &Timeouts) -> Result<(), Failure> {
    let reply = fan
        .request(
            &json!({"action": "unsubscribe", "artists": [artist]}),
            t.reply,
        )
        .await?;
    expect_ack(&reply, "unsubscribed", artist)?;
    fan.artists.retain(|a| a != artist);
    Ok(())
}

fn expect_ack(reply: &Value, kind: &str, artist: &str) -> Result<(), Failure> {
    if text(reply, "/type") == Some("error") {
        return Err(format!(
            "error frame {}: {}",
            text(reply, "/code").unwrap_or("?"),
            text(reply, "/message").unwrap_or("")
        )
        .into());
    }
    let listed = reply
        .get("artists")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == artist));
    if text(reply, "/type") == Some(kind) && listed {
        Ok(())
    } else {
        Err(format!(
            "expected {{\"type\":\"{kind}\",\"artists\":[{artist:?}]}}, got {}",
            ws::clip(&reply.to_string())
        )
        .into())
    }
}

/// Waits for the notification of event `id` for `artist` on `fan`; anything else first fails.
/// Event `id`'s delivery report, once its last work item finished: `marquee-admin event <id>`
/// on the stack's table, or the local gateway's `GET /events/<id>` (its `FanoutCompleted`).
/// One fan was subscribed to the event's artist: the report must say it reached one, failed
/// none, and is complete.
async fn delivery_report(r: &Resolved, id: &str) -> Outcome<()> {
    let t = &r.timeouts;
    let deadline = Instant::now() + t.delivery;
    let (completed, how) = loop {
        let found = if let Some(index) = &r.index {
            let event = marquee::domain::EventId::parse(id).map_err(|e| e.to_string())?;
            let report = index.report(&event).await?;
            (report.finished_all).then(|| report.completed())
        } else if let Some(origin) = &r.gateway {
            let answer = marquee_local::http::JsonClient::default()
                .get(&format!("{origin}/events/{id}"))
                .await
                .map_err(|e| format!("GET {origin}/events/{id}: {}", aws::chain(&e)))?;
            match answer.status.as_u16() {
                200 => Some(
                    serde_json::from_slice::<marquee::report::FanoutCompleted>(&answer.body)
                        .map_err(|e| format!("GET /events/{id}: not a FanoutCompleted: {e}"))?,
                ),
                404 => None,
                status => return Err(format!("GET /events/{id} answered {status}").into()),
            }
        } else {
            return Ok(Passed::skipped(
                "not checked: no table to read the report from (--stack enables it)",
            ));
        };
        let how = if r.index.is_some() {
            "marquee-admin event"
        } else {
            "the gateway's FanoutCompleted"
        };
        if let Some(completed) = found {
            break (completed, how);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "event {id}'s report still had work items outstanding after {}",
                seconds(t.delivery)
            )
            .into());
        }
        tokio::time::sleep(INDEX_POLL).await;
    };
    let c = &completed;
    if c.complete && c.delivered == 1 && c.failed == 0 && c.dead_lettered == 0 {
        let last = c
            .seconds_to_last_post
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.3} s"));
        Ok(Passed::new(
            (),
            format!(
                "{how}: complete, {} delivered, {} gone, 0 failed, {} item(s), last fan {last} \
                 after the sale's time",
                c.delivered, c.gone, c.items
            ),
        ))
    } else {
        Err(format!(
            "{how}: expected complete with 1 delivered and 0 failed, got complete {}, {} \
             delivered, {} failed, {} dead-lettered",
            c.complete, c.delivered, c.failed, c.dead_lettered
        )
        .into())
    }
}

async fn await_notification(
    fan: &mut Fan,
    id: &str,
    artist: &str,
    run: &str,
    wait: Duration,
) -> Result<(), Failure> {
    let label = fan.label;
    let frame = fan.next(wait).await?.ok_or_else(|| {
        format!(
            "{label} got no notification within {} of PutEvents (does the EventBridge rule \
             match source and detail-type on this bus, and may notify post to the Management \
             API? see marquee-notify's logs)",
            seconds(wait)
        )
    })?;
    let matches = text(&frame, "/type") == Some("notification")
        && text(&frame, "/id") == Some(id)
        && text(&frame, "/artist") == Some(artist)
        && text(&frame, "/detail/smoke") == Some(run);
    if matches {
        Ok(())
    } else {
        Err(format!(
            "{label} expected the notification of event {id}, got {}",
            ws::clip(&frame.to_string())
        )
        .into())
    }
}

/// The string at `pointer` in `value`, if there is one.
fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn artist_key(name: &str) -> Result<ArtistKey, Failure> {
    Artist::parse(name)
        .map(|a| a.key().clone())
        .map_err(|e| Failure::from(format!("{name:?} is not an artist name: {e}")))
}

/// Polls the table until the test artists have no subscription records left.
async fn disconnect_cleaned(index: &Index, keys: &[ArtistKey], t: &Timeouts) -> Outcome<()> {
    let started = Instant::now();
    loop {
        match index.subscriptions(keys).await {
            Ok(0) => {
                return Ok(Passed::new(
                    (),
                    format!(
                        "no subscription of the closed sockets left in {} after {}",
                        index.table,
                        human(started.elapsed())
                    ),
                ));
            }
            Ok(left) if started.elapsed() >= t.delivery => {
                return Err(format!(
                    "{left} subscription records still in {} {} after the close: $disconnect \
                     did not run or failed (see marquee-disconnect's logs)",
                    index.table,
                    seconds(t.delivery)
                )
                .into());
            }
            Ok(_) => tokio::time::sleep(INDEX_POLL).await,
            Err(IndexError::NotPermitted(e)) => {
                return Ok(Passed::skipped(format!(
                    "not checked: these credentials may not read {} ({e})",
                    index.table
                )));
            }
            Err(IndexError::Failed(e)) => {
                return Err(format!("could not read {}: {e}", index.table).into());
            }
        }
    }
}

/// Unsubscribes and closes whatever is still open, and says so.
async fn cleanup(suite: &mut Suite<'_>, fans: &mut Fans, t: &Timeouts) {
    let started = Instant::now();
    let mut problems = Vec::new();
    let (mut unsubscribed, mut closed) = (0, 0);
    for mut fan in [fans.a.take(), fans.b.take(), fans.c.take()]
        .into_iter()
        .flatten()
    {
        for artist in fan.artists.clone() {
            match unsubscribe(&mut fan, &artist, t).await {
                Ok(()) => unsubscribed += 1,
                Err(f) => problems.push(format!("unsubscribe {artist:?}: {}", f.detail)),
            }
        }
        match fan.close(t.reply).await {
            Ok(_) => closed += 1,
            Err(e) => problems.push(format!("close: {e}")),
        }
    }
    let (status, detail) = if !problems.is_empty() {
        (
            Status::Fail,
            format!(
                "{}; the connections' records expire by TTL",
                problems.join("; ")
            ),
        )
    } else if closed == 0 {
        (Status::Pass, "nothing left open".to_owned())
    } else {
        (
            Status::Pass,
            format!("{unsubscribed} subscription(s) removed, {closed} socket(s) closed"),
        )
    };
    suite.record(step::CLEANUP, status, started.elapsed(), detail);
}

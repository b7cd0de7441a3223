//! A [`Push`] that records frames in memory, with scripted outcomes for tests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Posted, Push, PushError};
use crate::domain::ConnectionId;

/// A scripted failure for [`RecordingPush::fail_next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Like a 429.
    Throttled,
    /// Like a 5xx.
    Unavailable,
    /// Like a 403.
    Refused,
    /// A 410 for a connection that is still open (API Gateway does this now and then).
    FalseGone,
}

#[derive(Debug, thiserror::Error)]
#[error("scripted {0:?}")]
struct Scripted(Failure);

#[derive(Debug, Default)]
struct State {
    delivered: Vec<(ConnectionId, Vec<u8>)>,
    attempts: HashMap<ConnectionId, u32>,
    gone: HashSet<ConnectionId>,
    closed: Vec<ConnectionId>,
    /// Per connection, the scripted outcomes of its next posts (`None`: post as usual).
    failures: HashMap<ConnectionId, VecDeque<Option<Failure>>>,
}

/// Records every delivered frame; connections can be marked gone or made to fail.
#[derive(Debug, Default)]
pub struct RecordingPush {
    state: Mutex<State>,
}

impl RecordingPush {
    /// A push that delivers everything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Posts to `id` answer [`Posted::Gone`] from now on.
    pub fn mark_gone(&self, id: &ConnectionId) {
        self.state().gone.insert(id.clone());
    }

    /// The next `times` posts to `id` fail with `failure`.
    pub fn fail_next(&self, id: &ConnectionId, failure: Failure, times: u32) {
        self.fail_after(id, 0, failure, times);
    }

    /// The next `ok` posts to `id` go as usual, then `times` fail with `failure`.
    pub fn fail_after(&self, id: &ConnectionId, ok: u32, failure: Failure, times: u32) {
        let mut state = self.state();
        let queue = state.failures.entry(id.clone()).or_default();
        queue.extend(std::iter::repeat_n(None, ok as usize));
        queue.extend(std::iter::repeat_n(Some(failure), times as usize));
    }

    /// Every delivered frame, in order.
    #[must_use]
    pub fn delivered(&self) -> Vec<(ConnectionId, Vec<u8>)> {
        self.state().delivered.clone()
    }

    /// Frames delivered to `id`, parsed as JSON.
    #[must_use]
    pub fn frames_to(&self, id: &ConnectionId) -> Vec<serde_json::Value> {
        self.state()
            .delivered
            .iter()
            .filter(|(to, _)| to == id)
            .filter_map(|(_, bytes)| serde_json::from_slice(bytes).ok())
            .collect()
    }

    /// Connections closed with [`Push::disconnect`], in order.
    #[must_use]
    pub fn closed(&self) -> Vec<ConnectionId> {
        self.state().closed.clone()
    }

    /// Posts attempted to `id`, whatever their outcome.
    #[must_use]
    pub fn attempts(&self, id: &ConnectionId) -> u32 {
        self.state().attempts.get(id).copied().unwrap_or(0)
    }
}

impl Push for RecordingPush {
    async fn post(&self, id: &ConnectionId, frame: &[u8]) -> Result<Posted, PushError> {
        let mut state = self.state();
        *state.attempts.entry(id.clone()).or_default() += 1;
        if let Some(Some(failure)) = state.failures.get_mut(id).and_then(VecDeque::pop_front) {
            let source = Box::new(Scripted(failure));
            return Err(match failure {
                Failure::Throttled => PushError::Throttled(source),
                Failure::Unavailable => PushError::Unavailable(source),
                Failure::Refused => PushError::Refused(source),
                Failure::FalseGone => return Ok(Posted::Gone),
            });
        }
        if state.gone.contains(id) {
            return Ok(Posted::Gone);
        }
        state.delivered.push((id.clone(), frame.to_vec()));
        Ok(Posted::Delivered)
    }

    async fn is_connected(&self, id: &ConnectionId) -> Result<bool, PushError> {
        Ok(!self.state().gone.contains(id))
    }

    /// Marks `id` gone (later posts answer [`Posted::Gone`]) and records the close.
    async fn disconnect(&self, id: &ConnectionId) -> Result<Posted, PushError> {
        let mut state = self.state();
        if !state.gone.insert(id.clone()) {
            return Ok(Posted::Gone);
        }
        state.closed.push(id.clone());
        Ok(Posted::Delivered)
    }
}

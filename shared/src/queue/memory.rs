//! An in-process queue with SQS's semantics: a received message is hidden for the visibility
//! timeout and comes back unless deleted; on the receive after `max_receives` it moves to a
//! dead-letter queue instead (SQS's redrive policy). It takes what SQS takes: messages up to
//! [`MESSAGE_MAX_BYTES`](super::MESSAGE_MAX_BYTES), sent in batches within SQS's limits, and
//! counts the batches ([`MemoryQueue::batches`]). Clones share one queue.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Inbox, Queue, QueueError, Received};
use crate::budget::Lane;
use crate::work::WorkItem;

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receives: u32,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    messages: VecDeque<Message>,
    sent: u64,
    batches: u64,
}

#[derive(Debug)]
struct Inner {
    state: Mutex<State>,
    arrived: Notify,
    visibility: Duration,
    /// Receives before a message is dead-lettered, and where it goes.
    redrive: Option<(u32, MemoryQueue)>,
}

/// [`Queue`] and [`Inbox`] in process memory.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
    /// The rooms' queue ([`Inbox::lane`]), when room messages have one.
    rooms: Option<Box<MemoryQueue>>,
}

impl MemoryQueue {
    /// A queue hiding received messages for `visibility`, dead-lettering a message on its
    /// receive after `max_receives` (see [`MemoryQueue::dead_letter_queue`]).
    #[must_use]
    pub fn new(visibility: Duration, max_receives: u32) -> Self {
        let dead = Self::plain(visibility, None);
        Self::plain(visibility, Some((max_receives.max(1), dead)))
    }

    fn plain(visibility: Duration, redrive: Option<(u32, MemoryQueue)>) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                arrived: Notify::new(),
                visibility,
                redrive,
            }),
            rooms: None,
        }
    }

    /// The same queue, with room messages' items sent to `rooms` instead (its clones share
    /// it): the local gateway's rooms queue, which workers of its own poll.
    #[must_use]
    pub fn with_rooms(mut self, rooms: MemoryQueue) -> Self {
        self.rooms = Some(Box::new(rooms));
        self
    }

    /// Where messages received too often go (a queue of its own, without a redrive policy).
    #[must_use]
    pub fn dead_letter_queue(&self) -> Option<Self> {
        self.inner.redrive.as_ref().map(|(_, dead)| dead.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Messages not yet deleted (visible or in flight).
    #[must_use]
    pub fn len(&self) -> usize {
        self.state().messages.len()
    }

    /// Whether every message was deleted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bodies moved to the dead-letter queue and still there.
    #[must_use]
    pub fn dead_letters(&self) -> Vec<String> {
        self.dead_letter_queue()
            .map(|dead| {
                dead.state()
                    .messages
                    .iter()
                    .map(|m| m.body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Messages sent since the start.
    #[must_use]
    pub fn sent(&self) -> u64 {
        self.state().sent
    }

    /// `SendMessageBatch` requests that SQS would have received for what was sent.
    #[must_use]
    pub fn batches(&self) -> u64 {
        self.state().batches
    }

    /// Takes up to `max` visible messages; otherwise when the next one becomes visible.
    fn take(&self, max: usize) -> Result<Vec<Received>, Option<Instant>> {
        let now = Instant::now();
        let max_receives = self
            .inner
            .redrive
            .as_ref()
            .map_or(u32::MAX, |(max, _)| *max);
        let mut state = self.state();
        let mut taken = Vec::new();
        let mut dead = Vec::new();
        let mut next_visible: Option<Instant> = None;
        for (index, message) in state.messages.iter_mut().enumerate() {
            if taken.len() >= max {
                break;
            }
            if message.visible_at > now {
                next_visible =
                    Some(next_visible.map_or(message.visible_at, |t| t.min(message.visible_at)));
                continue;
            }
            if message.receives >= max_receives {
                dead.push(index);
                continue;
            }
            message.receives += 1;
            message.visible_at = now + self.inner.visibility;
            let receipt = format!("{}#{}", message.id, message.receives);
            message.receipt = Some(receipt.clone());
            taken.push(Received {
                message_id: message.id.clone(),
                receipt,
                body: message.body.clone(),
                receive_count: message.receives,
                // The in-process queue does not carry trace headers.
                trace_header: None,
            });
        }
        let mut moved = Vec::new();
        for index in dead.into_iter().rev() {
            if let Some(message) = state.messages.remove(index) {
                moved.push(message.body);
            }
        }
        drop(state);
        if let Some((_, dead_letters)) = &self.inner.redrive
            && !moved.is_empty()
        {
            dead_letters.push_bodies(moved.into_iter().rev(), Duration::ZERO);
        }
        if taken.is_empty() {
            Err(next_visible)
        } else {
            Ok(taken)
        }
    }
}

impl MemoryQueue {
    fn push_bodies(&self, bodies: impl Iterator<Item = String>, delay: Duration) {
        {
            let now = Instant::now() + delay.min(super::MAX_DELAY);
            let mut state = self.state();
            for body in bodies {
                state.sent += 1;
                let id = format!("m{}", state.sent);
                state.messages.push_back(Message {
                    id,
                    body,
                    visible_at: now,
                    receives: 0,
                    receipt: None,
                });
            }
        }
        self.inner.arrived.notify_waiters();
    }
}

impl Queue for MemoryQueue {
    async fn send_after(&self, items: &[WorkItem], delay: Duration) -> Result<(), QueueError> {
        let Some(rooms) = &self.rooms else {
            return self.send_here(items, delay);
        };
        let (sale, room) = super::by_lane(items);
        if !sale.is_empty() {
            self.send_here(&sale, delay)?;
        }
        if !room.is_empty() {
            rooms.send_here(&room, delay)?;
        }
        Ok(())
    }
}

impl MemoryQueue {
    /// Sends `items` to this queue, whatever their lane.
    fn send_here(&self, items: &[WorkItem], delay: Duration) -> Result<(), QueueError> {
        let bodies = super::bodies(items)?;
        let batches = super::batches(&bodies)?;
        self.state().batches += crate::domain::saturating_u64(batches.len());
        for batch in batches {
            self.push_bodies(batch.iter().cloned(), delay);
        }
        Ok(())
    }
}

impl Inbox for MemoryQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let give_up = Instant::now() + wait;
        loop {
            // Register for a wake-up before looking, so a send in between is not missed.
            let arrived = self.inner.arrived.notified();
            let next_visible = match self.take(max.max(1)) {
                Ok(taken) => return Ok(taken),
                Err(next_visible) => next_visible,
            };
            let now = Instant::now();
            if now >= give_up {
                return Ok(Vec::new());
            }
            let until = next_visible.map_or(give_up, |t| t.min(give_up));
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut state = self.state();
        if let Some(index) = state
            .messages
            .iter()
            .position(|m| m.receipt.as_deref() == Some(receipt))
        {
            state.messages.remove(index);
        }
        Ok(())
    }

    async fn hide_for(&self, receipt: &str, hidden: Duration) -> Result<(), QueueError> {
        let now = Instant::now();
        {
            let mut state = self.state();
            // As SQS: only the latest receipt of a message still in flight counts.
            let message = state
                .messages
                .iter_mut()
                .find(|m| m.receipt.as_deref() == Some(receipt) && m.visible_at > now)
                .ok_or_else(|| {
                    QueueError::backend(
                        "ChangeMessageVisibility",
                        std::io::Error::other(format!("message {receipt} is not in flight")),
                    )
                })?;
            message.visible_at = now + super::lease::whole_seconds(hidden);
        }
        // A receive waiting for the next message to become visible must look again.
        self.inner.arrived.notify_waiters();
        Ok(())
    }

    async fn backlog(&self) -> Result<usize, QueueError> {
        Ok(self.len())
    }

    fn lane(&self, lane: Lane) -> &Self {
        match (lane, &self.rooms) {
            (Lane::Rooms, Some(rooms)) => rooms,
            _ => self,
        }
    }
}

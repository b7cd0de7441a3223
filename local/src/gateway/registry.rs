//! The open sockets, by connection id, each with its outbox: what the Management API posts to,
//! reports on and closes.
//!
//! An outbox is bounded in bytes, not frames: a client that reads slowly holds at most
//! [`Limits::outbox_bytes`](super::Limits::outbox_bytes) of posted frames (the one being written
//! included), and a post beyond that is refused as throttled (429), as API Gateway does when the
//! client side buffer is full. The socket task closes a client that stays behind
//! ([`Limits::send_timeout`](super::Limits::send_timeout)).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use axum::body::Bytes;
use tokio::sync::Notify;

use super::events::SocketInfo;

/// Why a post did not reach a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// No such connection, or it is closing (410).
    Gone,
    /// The socket's outbox is full (429).
    Throttled,
}

/// One socket's frames on their way out, shared by the registry (which posts) and the socket
/// task (which writes them).
#[derive(Debug)]
pub struct Outbox {
    limit: usize,
    state: Mutex<OutboxState>,
    /// Woken when a frame is queued or a close is asked for.
    ready: Notify,
}

#[derive(Debug, Default)]
struct OutboxState {
    frames: VecDeque<Bytes>,
    /// Bytes queued plus the bytes of the frame being written.
    bytes: usize,
    /// `DeleteConnection` asked the socket to close.
    closing: bool,
}

impl Outbox {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            state: Mutex::default(),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, frame: Bytes) -> Result<(), PostError> {
        {
            let mut state = self.lock();
            if state.closing {
                return Err(PostError::Gone);
            }
            // One frame always fits an empty outbox, whatever the limit.
            if state.bytes > 0 && state.bytes.saturating_add(frame.len()) > self.limit {
                return Err(PostError::Throttled);
            }
            state.bytes = state.bytes.saturating_add(frame.len());
            state.frames.push_back(frame);
        }
        self.ready.notify_one();
        Ok(())
    }

    fn close(&self) {
        self.lock().closing = true;
        self.ready.notify_one();
    }

    /// The next frame to write; its bytes stay counted until [`Self::written`].
    pub fn next_frame(&self) -> Option<Bytes> {
        self.lock().frames.pop_front()
    }

    /// A frame of `bytes` left for the client.
    pub fn written(&self, bytes: usize) {
        let mut state = self.lock();
        state.bytes = state.bytes.saturating_sub(bytes);
    }

    /// Whether no frame waits to be written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().frames.is_empty()
    }

    /// Whether `DeleteConnection` asked the socket to close.
    #[must_use]
    pub fn closing(&self) -> bool {
        self.lock().closing
    }

    /// Waits until a frame may have been queued or a close asked for (check both after).
    pub async fn changed(&self) {
        self.ready.notified().await;
    }
}

#[derive(Debug)]
struct Entry {
    info: SocketInfo,
    last_active: SystemTime,
    outbox: Arc<Outbox>,
}

/// Open sockets by connection id.
#[derive(Debug, Default)]
pub struct Registry {
    sockets: Mutex<HashMap<String, Entry>>,
}

/// What `GET @connections/{id}` reports.
#[derive(Debug, Clone)]
pub struct ConnectionReport {
    /// The socket.
    pub info: SocketInfo,
    /// Last message from the client.
    pub last_active: SystemTime,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an open socket with an outbox of `outbox_bytes`; returns the outbox for its task.
    pub fn open(&self, info: SocketInfo, outbox_bytes: usize) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::new(outbox_bytes));
        let id = info.connection_id.clone();
        self.lock().insert(
            id,
            Entry {
                last_active: info.connected_at,
                info,
                outbox: Arc::clone(&outbox),
            },
        );
        outbox
    }

    /// Forgets a socket (it closed).
    pub fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Notes client activity.
    pub fn touch(&self, id: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.last_active = SystemTime::now();
        }
    }

    /// Queues a frame for a socket.
    ///
    /// # Errors
    /// [`PostError`] when the socket is gone or closing, or its outbox is full.
    pub fn post(&self, id: &str, frame: Bytes) -> Result<(), PostError> {
        let outbox = Arc::clone(&self.lock().get(id).ok_or(PostError::Gone)?.outbox);
        outbox.push(frame)
    }

    /// Asks a socket to close.
    ///
    /// # Errors
    /// [`PostError::Gone`] when there is no such socket.
    pub fn disconnect(&self, id: &str) -> Result<(), PostError> {
        let outbox = Arc::clone(&self.lock().get(id).ok_or(PostError::Gone)?.outbox);
        outbox.close();
        Ok(())
    }

    /// What the Management API's `GET` reports.
    #[must_use]
    pub fn report(&self, id: &str) -> Option<ConnectionReport> {
        self.lock().get(id).map(|entry| ConnectionReport {
            info: entry.info.clone(),
            last_active: entry.last_active,
        })
    }

    /// The ids of the open sockets.
    #[must_use]
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// How many sockets are open.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no socket is open.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn info(id: &str) -> SocketInfo {
        SocketInfo {
            connection_id: id.into(),
            connected_at: SystemTime::now(),
            source_ip: "127.0.0.1".into(),
            user_agent: None,
            domain_name: "localhost".into(),
            stage: "local".into(),
        }
    }

    #[test]
    fn an_outbox_is_bounded_in_bytes_until_frames_are_written() {
        let registry = Registry::default();
        let outbox = registry.open(info("a="), 100);
        registry.post("a=", Bytes::from(vec![b'x'; 60])).unwrap();
        registry.post("a=", Bytes::from(vec![b'x'; 40])).unwrap();
        assert_eq!(
            registry.post("a=", Bytes::from_static(b"x")),
            Err(PostError::Throttled)
        );
        // Taken but not yet written: still counted.
        let frame = outbox.next_frame().unwrap();
        assert_eq!(
            registry.post("a=", Bytes::from_static(b"x")),
            Err(PostError::Throttled)
        );
        outbox.written(frame.len());
        registry.post("a=", Bytes::from(vec![b'x'; 60])).unwrap();
    }

    #[test]
    fn one_frame_fits_an_empty_outbox_whatever_its_size() {
        let registry = Registry::default();
        let _outbox = registry.open(info("a="), 10);
        registry.post("a=", Bytes::from(vec![b'x'; 50])).unwrap();
        assert_eq!(
            registry.post("a=", Bytes::from_static(b"x")),
            Err(PostError::Throttled)
        );
    }

    #[test]
    fn posts_to_unknown_or_closing_sockets_are_gone() {
        let registry = Registry::default();
        assert_eq!(
            registry.post("nobody=", Bytes::from_static(b"x")),
            Err(PostError::Gone)
        );
        let outbox = registry.open(info("a="), 100);
        registry.disconnect("a=").unwrap();
        assert!(outbox.closing());
        assert_eq!(
            registry.post("a=", Bytes::from_static(b"x")),
            Err(PostError::Gone)
        );
    }
}

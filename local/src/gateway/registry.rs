//! The open sockets, by connection id: what the Management API posts to and closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::{Notify, mpsc};

use super::events::SocketInfo;

/// Frames queued for one socket before posts to it are refused as throttled (429).
pub const OUTBOX_CAPACITY: usize = 1024;

/// The socket task's side of a registered socket.
#[derive(Debug)]
pub struct Mailbox {
    /// Frames to send (text when UTF-8, binary otherwise, as API Gateway does).
    pub frames: mpsc::Receiver<Vec<u8>>,
    /// Signalled when the Management API deletes the connection.
    pub close: Arc<Notify>,
}

/// Why a post did not reach a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// No such connection (410).
    Gone,
    /// The socket's outbox is full (429).
    Throttled,
}

#[derive(Debug)]
struct Entry {
    info: SocketInfo,
    last_active: SystemTime,
    outbox: mpsc::Sender<Vec<u8>>,
    close: Arc<Notify>,
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

    /// Adds an open socket; returns what its task listens to.
    pub fn open(&self, info: SocketInfo) -> Mailbox {
        let (outbox, frames) = mpsc::channel(OUTBOX_CAPACITY);
        let close = Arc::new(Notify::new());
        let id = info.connection_id.clone();
        self.lock().insert(
            id,
            Entry {
                last_active: info.connected_at,
                info,
                outbox,
                close: Arc::clone(&close),
            },
        );
        Mailbox { frames, close }
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
    /// [`PostError`] when the socket is gone or its outbox is full.
    pub fn post(&self, id: &str, frame: Vec<u8>) -> Result<(), PostError> {
        let sockets = self.lock();
        let entry = sockets.get(id).ok_or(PostError::Gone)?;
        entry.outbox.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PostError::Throttled,
            mpsc::error::TrySendError::Closed(_) => PostError::Gone,
        })
    }

    /// Asks a socket to close.
    ///
    /// # Errors
    /// [`PostError::Gone`] when there is no such socket.
    pub fn disconnect(&self, id: &str) -> Result<(), PostError> {
        let sockets = self.lock();
        let entry = sockets.get(id).ok_or(PostError::Gone)?;
        entry.close.notify_one();
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

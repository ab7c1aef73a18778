//! Subscriptions of one process, on a connection of their own so that
//! commands keep flowing on the shared one.
//!
//! In the process that hosts the broker, subscriptions are registered in the
//! store directly with a mailbox that hands messages over; elsewhere they
//! go over a RESP2 pub/sub connection, which is reopened after it fails (for
//! instance when the broker cut off a subscriber that fell too far behind)
//! with every subscription restored, and the listeners told they may have
//! missed messages.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::PubSubSink;

use crate::client::ClientOptions;
use crate::error::ShmError;
use crate::store::{Db, Kind, Mailbox, Message, Payload};

/// What a subscriber reports to its listener.
pub enum Event {
    Message {
        channel: Bytes,
        payload: Bytes,
        pattern: Option<Bytes>,
    },
    /// Messages may have been lost: the connection was reopened, or the
    /// listener's queue overflowed.
    Missed {
        reason: &'static str,
    },
}

/// Hands an event to the listener; false when its queue is full.
pub type Emit = Arc<dyn Fn(Event) -> bool + Send + Sync>;

/// Delivers to an in-process listener, remembering overflow so the next
/// delivered message is preceded by a `Missed` event.
struct LocalMailbox {
    emit: Emit,
    overflowed: AtomicBool,
}

impl Mailbox for LocalMailbox {
    fn deliver(&self, message: &Message<'_>, _: usize) -> bool {
        // Invalidations go to socket clients only (an in-process subscriber
        // is no connected client a tracking client could redirect to).
        let Payload::Bulk(payload) = message.payload else { return true };
        if self.overflowed.load(Ordering::Acquire) && (self.emit)(Event::Missed { reason: "overflow" }) {
            self.overflowed.store(false, Ordering::Release);
        }
        let event = Event::Message {
            channel: message.channel.clone(),
            payload: payload.clone(),
            pattern: message.pattern.cloned(),
        };
        if !(self.emit)(event) {
            self.overflowed.store(true, Ordering::Release);
        }
        // An in-process listener is never cut off.
        true
    }
}

pub enum Subscriber {
    Local { db: Db, client: u64, mailbox: Arc<dyn Mailbox> },
    Remote(Arc<Remote>),
}

impl Subscriber {
    pub fn local(db: Db, emit: Emit) -> Subscriber {
        let client = db.counters().next_client_id();
        Subscriber::Local { db, client, mailbox: Arc::new(LocalMailbox { emit, overflowed: AtomicBool::new(false) }) }
    }

    pub fn remote(options: ClientOptions, emit: Emit) -> Result<Subscriber, ShmError> {
        Ok(Subscriber::Remote(Arc::new(Remote {
            options,
            emit,
            sink: tokio::sync::Mutex::new(None),
            wanted: Mutex::new(Wanted::default()),
            forwarder: Mutex::new(None),
            closed: AtomicBool::new(false),
        })))
    }

    pub async fn subscribe(&self, kind: Kind, name: Bytes) -> Result<(), ShmError> {
        match self {
            Subscriber::Local { db, client, mailbox } => {
                db.lock().pubsub.subscribe(*client, mailbox, kind, &name);
                Ok(())
            }
            Subscriber::Remote(remote) => remote.clone().subscribe(kind, name).await,
        }
    }

    pub async fn unsubscribe(&self, kind: Kind, name: Bytes) -> Result<(), ShmError> {
        match self {
            Subscriber::Local { db, client, .. } => {
                db.lock().pubsub.unsubscribe(*client, kind, &name);
                Ok(())
            }
            Subscriber::Remote(remote) => remote.unsubscribe(kind, name).await,
        }
    }

    pub fn close(&self) {
        match self {
            Subscriber::Local { db, client, .. } => db.lock().pubsub.remove_client(*client),
            Subscriber::Remote(remote) => remote.close(),
        }
    }
}

#[derive(Default)]
struct Wanted {
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
}

pub struct Remote {
    options: ClientOptions,
    emit: Emit,
    /// The open pub/sub connection's command side, if any.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// What should be subscribed, restored after a reconnect.
    wanted: Mutex<Wanted>,
    /// The task forwarding messages of the open connection.
    forwarder: Mutex<Option<tokio::task::AbortHandle>>,
    closed: AtomicBool,
}

impl Remote {
    async fn subscribe(self: Arc<Self>, kind: Kind, name: Bytes) -> Result<(), ShmError> {
        {
            let mut wanted = self.wanted.lock();
            match kind {
                Kind::Channel => wanted.channels.insert(name.clone()),
                Kind::Pattern => wanted.patterns.insert(name.clone()),
            };
        }
        let mut sink = self.sink.lock().await;
        if self.closed.load(Ordering::Acquire) {
            *sink = None;
            return Err(ShmError::Closed);
        }
        if sink.is_none() {
            // Connecting subscribes to everything wanted, this name included.
            // (connect() fails if close() came meanwhile: nothing is kept.)
            *sink = Some(self.clone().connect().await?);
            return Ok(());
        }
        let connection = sink.as_mut().expect("connected");
        let sending = async {
            match kind {
                Kind::Channel => connection.subscribe(name.as_ref()).await,
                Kind::Pattern => connection.psubscribe(name.as_ref()).await,
            }
        };
        let sent = match tokio::time::timeout(self.options.command_timeout, sending).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ShmError::Unreachable(format!("subscribe failed: {error}"))),
            Err(_) => Err(ShmError::Timeout(format!(
                "no reply from the broker within {} ms",
                self.options.command_timeout.as_millis()
            ))),
        };
        if self.closed.load(Ordering::Acquire) {
            *sink = None;
        }
        if sent.is_err() {
            // Not subscribed: not to be restored on reconnect either.
            let mut wanted = self.wanted.lock();
            match kind {
                Kind::Channel => wanted.channels.remove(&name),
                Kind::Pattern => wanted.patterns.remove(&name),
            };
        }
        sent
    }

    async fn unsubscribe(&self, kind: Kind, name: Bytes) -> Result<(), ShmError> {
        {
            let mut wanted = self.wanted.lock();
            match kind {
                Kind::Channel => wanted.channels.remove(&name),
                Kind::Pattern => wanted.patterns.remove(&name),
            };
        }
        let mut sink = self.sink.lock().await;
        if self.closed.load(Ordering::Acquire) {
            // close() could not take the connection while this held it.
            *sink = None;
            return Err(ShmError::Closed);
        }
        let Some(connection) = sink.as_mut() else { return Ok(()) };
        let sending = async {
            match kind {
                Kind::Channel => connection.unsubscribe(name.as_ref()).await,
                Kind::Pattern => connection.punsubscribe(name.as_ref()).await,
            }
        };
        let sent = tokio::time::timeout(self.options.command_timeout, sending).await;
        if self.closed.load(Ordering::Acquire) {
            *sink = None;
        }
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ShmError::Unreachable(format!("unsubscribe failed: {error}"))),
            Err(_) => Err(ShmError::Timeout(format!(
                "no reply from the broker within {} ms",
                self.options.command_timeout.as_millis()
            ))),
        }
    }

    /// Opens the pub/sub connection, subscribes to everything wanted and
    /// starts the task that forwards messages (and reconnects).
    /// (Boxed: the forwarding task it starts calls it again to reconnect.)
    fn connect(self: Arc<Self>) -> BoxFuture<'static, Result<PubSubSink, ShmError>> {
        Box::pin(async move {
            if self.closed.load(Ordering::Acquire) {
                return Err(ShmError::Closed);
            }
            let unreachable = |why: String| {
                ShmError::Unreachable(format!(
                    "cannot reach the cluster-shm broker at {} to subscribe: {why}",
                    self.options.socket.display()
                ))
            };
            // Checked anew for each connection: the socket's directory must
            // be out of other users' reach (src/trusted_socket.rs).
            let redis = match crate::client::redis_client(&self.options) {
                Ok(redis) => redis,
                Err(ShmError::Unreachable(why)) => return Err(unreachable(why)),
                Err(error) => return Err(error),
            };
            let opened = tokio::time::timeout(self.options.connect_timeout, redis.get_async_pubsub()).await;
            let pubsub = match opened {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(error)) if crate::client::is_auth_error(&error) => {
                    return Err(crate::client::auth_error(&self.options))
                }
                // Running out of files is not the broker's fault: say so.
                Ok(Err(error)) => match crate::client::out_of(&error) {
                    Some(what) => {
                        return Err(ShmError::NoResources(format!(
                            "cannot connect to the cluster-shm broker at {} to subscribe: this process ran out of {what} ({error})",
                            self.options.socket.display()
                        )))
                    }
                    None => return Err(unreachable(error.to_string())),
                },
                Err(_) => return Err(unreachable("connect timeout".into())),
            };
            let (mut sink, stream) = pubsub.split();
            let (channels, patterns): (Vec<Bytes>, Vec<Bytes>) = {
                let wanted = self.wanted.lock();
                (wanted.channels.iter().cloned().collect(), wanted.patterns.iter().cloned().collect())
            };
            for channel in &channels {
                sink.subscribe(channel.as_ref()).await.map_err(|e| unreachable(e.to_string()))?;
            }
            for pattern in &patterns {
                sink.psubscribe(pattern.as_ref()).await.map_err(|e| unreachable(e.to_string()))?;
            }
            let task = tokio::spawn(self.clone().forward(stream));
            *self.forwarder.lock() = Some(task.abort_handle());
            // close() may have come while this connected: it found no task
            // to stop and no connection to drop, so this drops both.
            if self.closed.load(Ordering::Acquire) {
                task.abort();
                return Err(ShmError::Closed);
            }
            Ok(sink)
        })
    }

    async fn forward(self: Arc<Self>, mut stream: redis::aio::PubSubStream) {
        // Set when the listener's queue was full: the next message that gets
        // through is preceded by a Missed event.
        let mut overflowed = false;
        while let Some(message) = stream.next().await {
            if overflowed && (self.emit)(Event::Missed { reason: "overflow" }) {
                overflowed = false;
            }
            let channel: Vec<u8> = message.get_channel().unwrap_or_default();
            let pattern: Option<Vec<u8>> = message.get_pattern().unwrap_or(None);
            let event = Event::Message {
                channel: Bytes::from(channel),
                payload: Bytes::copy_from_slice(message.get_payload_bytes()),
                pattern: pattern.map(Bytes::from),
            };
            if !(self.emit)(event) {
                overflowed = true;
            }
        }
        // The connection is gone: reopen it unless we were closed.
        let mut delay = Duration::from_millis(20);
        loop {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let mut sink = self.sink.lock().await;
            *sink = None;
            match self.clone().connect().await {
                Ok(fresh) => {
                    *sink = Some(fresh);
                    drop(sink);
                    (self.emit)(Event::Missed { reason: "reconnected" });
                    return;
                }
                Err(_) => {
                    drop(sink);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Stops delivery at once. The connection is dropped here, or, when a
    /// subscribe or unsubscribe holds it, by that call as soon as it sees
    /// `closed` (and a connection still being opened is dropped by
    /// `connect` itself).
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(task) = self.forwarder.lock().take() {
            task.abort();
        }
        if let Ok(mut sink) = self.sink.try_lock() {
            *sink = None;
        }
    }
}

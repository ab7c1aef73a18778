//! The subscriptions of the process that hosts the broker: registered in the
//! store directly, with a mailbox that hands messages over to JavaScript.
//! (Other processes subscribe over their connection to the broker, which
//! pushes the messages: lib/backends/broker.js.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::store::{Db, Kind, Mailbox, Message, Payload};

/// What a subscriber reports to its listener.
pub enum Event {
    Message {
        channel: Bytes,
        payload: Bytes,
        pattern: Option<Bytes>,
    },
    /// Messages may have been lost: the listener's queue overflowed.
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

/// The subscriptions of the process that hosts the broker, registered in
/// the store directly.
pub struct Subscriber {
    db: Db,
    client: u64,
    mailbox: Arc<dyn Mailbox>,
}

impl Subscriber {
    pub fn local(db: Db, emit: Emit) -> Subscriber {
        let client = db.counters().next_client_id();
        Subscriber { db, client, mailbox: Arc::new(LocalMailbox { emit, overflowed: AtomicBool::new(false) }) }
    }

    pub fn subscribe(&self, kind: Kind, name: Bytes) {
        self.db.lock().pubsub.subscribe(self.client, &self.mailbox, kind, &name);
    }

    pub fn unsubscribe(&self, kind: Kind, name: Bytes) {
        self.db.lock().pubsub.unsubscribe(self.client, kind, &name);
    }

    pub fn close(&self) {
        self.db.lock().pubsub.remove_client(self.client);
    }
}

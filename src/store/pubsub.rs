//! Publish/subscribe: who listens to which channel or pattern, and delivery.
//!
//! Each subscriber has a mailbox. A socket client's mailbox queues the
//! encoded message on its connection (and refuses once the client's unread
//! output passes the limit: the client is then cut off and forgotten); an
//! in-process subscriber's mailbox hands the message to JavaScript.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::glob::glob_match;

/// One published message as a subscriber sees it.
pub struct Message<'a> {
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<&'a Bytes>,
    pub channel: &'a Bytes,
    pub payload: Payload<'a>,
}

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// A published payload (a bulk string).
    Bulk(&'a Bytes),
    /// Client-side caching: keys invalidated (an array of bulk strings).
    Keys(&'a [Bytes]),
    /// Client-side caching: every key invalidated by a flush (a null bulk).
    Flush,
}

pub trait Mailbox: Send + Sync {
    /// Delivers a message; false means the subscriber is gone or more than
    /// `output_limit` bytes behind (0: no limit), and is dropped from every
    /// subscription.
    fn deliver(&self, message: &Message<'_>, output_limit: usize) -> bool;

    /// Sends an encoded frame the client did not ask for (a lock wait's
    /// outcome), in order with the replies; false when the client is gone.
    /// Only a socket connection has a way to send one.
    fn push(&self, _frame: bytes::Bytes) -> bool {
        false
    }

    /// Frames this subscriber's messages as pushes (SHM.PUSHES), or not;
    /// false where messages are not framed at all (in-process subscribers).
    fn frame_as_pushes(&self, _on: bool) -> bool {
        false
    }
}

struct Subscriber {
    mailbox: Arc<dyn Mailbox>,
    channels: HashSet<Bytes>,
    patterns: HashSet<Bytes>,
}

pub struct PubSub {
    channels: HashMap<Bytes, HashSet<u64>>,
    patterns: HashMap<Bytes, HashSet<u64>>,
    subscribers: HashMap<u64, Subscriber>,
    /// Unread bytes a socket subscriber may fall behind before it is cut
    /// off (Redis's `client-output-buffer-limit pubsub` hard limit).
    pub output_limit: usize,
}

/// Redis's default hard limit for pub/sub clients.
pub const DEFAULT_OUTPUT_LIMIT: usize = 32 * 1024 * 1024;

impl Default for PubSub {
    fn default() -> Self {
        PubSub {
            channels: HashMap::new(),
            patterns: HashMap::new(),
            subscribers: HashMap::new(),
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Channel,
    Pattern,
}

impl PubSub {
    /// True when nobody subscribes to anything: publishing costs nothing.
    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Whether a client is in subscribed mode (cheap when nobody is).
    pub fn is_subscribed(&self, client: u64) -> bool {
        !self.subscribers.is_empty() && self.subscribers.contains_key(&client)
    }

    /// Channels plus patterns a client subscribes to.
    pub fn count(&self, client: u64) -> usize {
        self.subscribers.get(&client).map_or(0, |s| s.channels.len() + s.patterns.len())
    }

    /// Adds a subscription; returns the client's subscription count.
    pub fn subscribe(&mut self, client: u64, mailbox: &Arc<dyn Mailbox>, kind: Kind, name: &Bytes) -> usize {
        let subscriber = self.subscribers.entry(client).or_insert_with(|| Subscriber {
            mailbox: mailbox.clone(),
            channels: HashSet::new(),
            patterns: HashSet::new(),
        });
        let (own, index) = match kind {
            Kind::Channel => (&mut subscriber.channels, &mut self.channels),
            Kind::Pattern => (&mut subscriber.patterns, &mut self.patterns),
        };
        if own.insert(name.clone()) {
            index.entry(name.clone()).or_default().insert(client);
        }
        subscriber.channels.len() + subscriber.patterns.len()
    }

    /// Removes a subscription; returns the client's subscription count.
    pub fn unsubscribe(&mut self, client: u64, kind: Kind, name: &[u8]) -> usize {
        let Some(subscriber) = self.subscribers.get_mut(&client) else { return 0 };
        let (own, index) = match kind {
            Kind::Channel => (&mut subscriber.channels, &mut self.channels),
            Kind::Pattern => (&mut subscriber.patterns, &mut self.patterns),
        };
        if own.remove(name) {
            if let Some(clients) = index.get_mut(name) {
                clients.remove(&client);
                if clients.is_empty() {
                    index.remove(name);
                }
            }
        }
        let count = subscriber.channels.len() + subscriber.patterns.len();
        if count == 0 {
            self.subscribers.remove(&client);
        }
        count
    }

    /// The channels (or patterns) a client subscribes to, sorted.
    pub fn subscriptions(&self, client: u64, kind: Kind) -> Vec<Bytes> {
        let mut names: Vec<Bytes> = self
            .subscribers
            .get(&client)
            .map(|s| match kind {
                Kind::Channel => s.channels.iter().cloned().collect(),
                Kind::Pattern => s.patterns.iter().cloned().collect(),
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Forgets a client and all its subscriptions.
    pub fn remove_client(&mut self, client: u64) {
        let Some(subscriber) = self.subscribers.remove(&client) else { return };
        for (names, index) in [(subscriber.channels, &mut self.channels), (subscriber.patterns, &mut self.patterns)] {
            for name in names {
                if let Some(clients) = index.get_mut(&name) {
                    clients.remove(&client);
                    if clients.is_empty() {
                        index.remove(&name);
                    }
                }
            }
        }
    }

    /// Delivers to every subscriber of the channel and of every matching
    /// pattern; returns how many received it.
    pub fn publish(&mut self, channel: &Bytes, payload: &Bytes) -> usize {
        if self.subscribers.is_empty() {
            return 0;
        }
        let mut received = 0;
        let mut dropped = Vec::new();
        let matching =
            self.channels.get(channel).map(|clients| (None, clients)).into_iter().chain(
                self.patterns.iter().filter(|(pattern, _)| glob_match(pattern, channel)).map(|(p, c)| (Some(p), c)),
            );
        for (pattern, clients) in matching {
            let message = Message { pattern, channel, payload: Payload::Bulk(payload) };
            for client in clients {
                match self.subscribers.get(client) {
                    Some(s) if s.mailbox.deliver(&message, self.output_limit) => received += 1,
                    _ => dropped.push(*client),
                }
            }
        }
        for client in dropped {
            self.remove_client(client);
        }
        received
    }

    /// Delivers to one client, only if it is in subscribed mode (as Redis
    /// does with invalidations for a redirect client). False when it is not,
    /// or when its mailbox refused: it is then dropped, as by `publish`.
    pub fn send_to(&mut self, client: u64, channel: &Bytes, payload: Payload<'_>) -> bool {
        let Some(subscriber) = self.subscribers.get(&client) else { return false };
        if subscriber.mailbox.deliver(&Message { pattern: None, channel, payload }, self.output_limit) {
            return true;
        }
        self.remove_client(client);
        false
    }

    /// Active channels (with at least one subscriber) matching `pattern`.
    pub fn active_channels(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let mut names: Vec<Bytes> =
            self.channels.keys().filter(|c| pattern.is_none_or(|p| glob_match(p, c))).cloned().collect();
        names.sort();
        names
    }

    pub fn subscriber_count(&self, channel: &[u8]) -> usize {
        self.channels.get(channel).map_or(0, |c| c.len())
    }

    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;

    /// Records what it receives; refuses after `capacity` messages.
    struct Recorder {
        seen: Mutex<Vec<(Option<Bytes>, Bytes, Bytes)>>,
        capacity: AtomicUsize,
    }

    impl Mailbox for Recorder {
        fn deliver(&self, m: &Message<'_>, _: usize) -> bool {
            if self.capacity.load(Ordering::Relaxed) == 0 {
                return false;
            }
            self.capacity.fetch_sub(1, Ordering::Relaxed);
            let Payload::Bulk(payload) = m.payload else { panic!("only published payloads here") };
            self.seen.lock().push((m.pattern.cloned(), m.channel.clone(), payload.clone()));
            true
        }
    }

    fn recorder(capacity: usize) -> (Arc<Recorder>, Arc<dyn Mailbox>) {
        let r = Arc::new(Recorder { seen: Mutex::new(Vec::new()), capacity: AtomicUsize::new(capacity) });
        (r.clone(), r)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn channels_and_patterns_receive_and_count() {
        let mut ps = PubSub::default();
        let (a, mailbox_a) = recorder(100);
        let (p, mailbox_p) = recorder(100);
        assert_eq!(ps.subscribe(1, &mailbox_a, Kind::Channel, &b("news")), 1);
        assert_eq!(ps.subscribe(1, &mailbox_a, Kind::Channel, &b("news")), 1);
        assert_eq!(ps.subscribe(1, &mailbox_a, Kind::Channel, &b("other")), 2);
        assert_eq!(ps.subscribe(2, &mailbox_p, Kind::Pattern, &b("n*")), 1);
        assert_eq!(ps.publish(&b("news"), &b("hello")), 2);
        assert_eq!(ps.publish(&b("nothing"), &b("x")), 1);
        assert_eq!(ps.publish(&b("quiet"), &b("x")), 0);
        assert_eq!(a.seen.lock().as_slice(), &[(None, b("news"), b("hello"))]);
        assert_eq!(p.seen.lock()[1], (Some(b("n*")), b("nothing"), b("x")));
        assert_eq!(ps.active_channels(None), vec![b("news"), b("other")]);
        assert_eq!(ps.active_channels(Some(b"n*")), vec![b("news")]);
        assert_eq!(ps.subscriber_count(b"news"), 1);
        assert_eq!(ps.pattern_count(), 1);
        assert_eq!(ps.unsubscribe(1, Kind::Channel, b"news"), 1);
        assert_eq!(ps.publish(&b("news"), &b("again")), 1);
        ps.remove_client(2);
        assert_eq!(ps.publish(&b("news"), &b("again")), 0);
        assert_eq!(ps.unsubscribe(1, Kind::Channel, b"other"), 0);
        assert!(ps.is_empty());
    }

    #[test]
    fn a_refusing_mailbox_is_dropped_from_everything() {
        let mut ps = PubSub::default();
        let (_, slow) = recorder(1);
        let (fast, fast_box) = recorder(100);
        ps.subscribe(1, &slow, Kind::Channel, &b("c"));
        ps.subscribe(1, &slow, Kind::Pattern, &b("*"));
        ps.subscribe(2, &fast_box, Kind::Channel, &b("c"));
        // The slow one takes one message, then refuses and is cut off.
        assert_eq!(ps.publish(&b("c"), &b("1")), 2);
        assert_eq!(ps.count(1), 0);
        assert_eq!(ps.publish(&b("c"), &b("2")), 1);
        assert_eq!(fast.seen.lock().len(), 2);
    }
}

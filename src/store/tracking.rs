//! Client-side caching: Redis's `CLIENT TRACKING` in its default mode, with
//! invalidations redirected to another connection (the RESP2 way).
//!
//! After a tracking client runs a read-only command, every key the command
//! names is remembered for it. The first change to such a key afterwards
//! (write, delete, ttl change, expiry, eviction) sends each client tracking
//! it one invalidation, a pub/sub `message` on `__redis__:invalidate` whose
//! payload is an array holding the key, to the client it redirects to, and
//! forgets the key: the next read registers it again. A flush sends a null
//! payload ("everything") to every tracking client and empties the table.
//!
//! As in Redis:
//! - a message reaches the redirect client only while it is in subscribed
//!   mode (subscribed to anything); otherwise it is dropped;
//! - with NOLOOP, changes made by the client's own commands (including a
//!   key its own command finds expired) are not sent to it, but the key is
//!   forgotten for every client all the same; a flush is always sent;
//! - `tracking-table-max-keys` bounds the keys remembered: past it, random
//!   keys are invalidated (sent as if they had changed) and forgotten.
//!
//! Unlike Redis, which forgets keys lazily (when they next change), state is
//! reclaimed at once: the keys of a client that turns tracking off or
//! disconnects are dropped, and so are those of a client whose redirect
//! client disconnected. Such a client stays in tracking mode (as in Redis,
//! where RESP2 gives no way to tell it) but remembers nothing more, since
//! nothing could be delivered for it, until `CLIENT TRACKING ON REDIRECT`
//! names a live client again. Eviction by the memory bound and the
//! background expiry sweep are never attributed to a client, so NOLOOP does
//! not hide them.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;

use super::pubsub::{Payload, PubSub};
use super::sample::Sampler;

/// The channel invalidations are published on.
pub const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";
/// Redis's default `tracking-table-max-keys`.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// One client in tracking mode.
#[derive(Debug)]
struct Tracker {
    redirect: u64,
    noloop: bool,
    /// The redirect client disconnected: nothing can be delivered, so
    /// nothing is remembered.
    broken: bool,
    /// The keys remembered for this client (shared with the table).
    keys: HashSet<Bytes, ahash::RandomState>,
}

/// How a client tracks, as CLIENT TRACKINGINFO and CLIENT INFO report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrackingState {
    pub redirect: u64,
    pub noloop: bool,
    pub broken: bool,
}

pub struct Tracking {
    /// Key → clients that read it since its last change. A short vector:
    /// few clients share a key (one tracking connection per process).
    table: IndexMap<Bytes, Vec<u64>, ahash::RandomState>,
    trackers: HashMap<u64, Tracker>,
    /// Socket clients currently connected: REDIRECT must name one.
    connected: HashSet<u64>,
    /// (key, client) pairs in the table.
    items: usize,
    /// `tracking-table-max-keys`; 0 is unbounded.
    max_keys: usize,
    /// The client whose command is running (0: none), for NOLOOP.
    current: u64,
    sampler: Sampler,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            table: IndexMap::default(),
            trackers: HashMap::new(),
            connected: HashSet::new(),
            items: 0,
            max_keys: DEFAULT_MAX_KEYS,
            current: 0,
            sampler: Sampler::default(),
        }
    }
}

impl Tracking {
    /// A socket client connected.
    pub fn connect(&mut self, client: u64) {
        self.connected.insert(client);
    }

    pub fn is_connected(&self, client: u64) -> bool {
        self.connected.contains(&client)
    }

    /// A socket client disconnected: its tracking ends, and clients
    /// redirecting to it can receive nothing more (their keys are dropped).
    pub fn disconnect(&mut self, client: u64) {
        self.connected.remove(&client);
        if self.trackers.is_empty() {
            return;
        }
        self.disable(client);
        let orphaned: Vec<u64> =
            self.trackers.iter().filter(|(_, t)| t.redirect == client && !t.broken).map(|(id, _)| *id).collect();
        for id in orphaned {
            self.forget_client_keys(id);
            if let Some(tracker) = self.trackers.get_mut(&id) {
                tracker.broken = true;
            }
        }
    }

    /// CLIENT TRACKING ON: (re)starts tracking with these options. Keys
    /// already remembered for the client stay, now reported to `redirect`.
    pub fn enable(&mut self, client: u64, redirect: u64, noloop: bool) {
        let tracker = self.trackers.entry(client).or_insert_with(|| Tracker {
            redirect,
            noloop,
            broken: false,
            keys: HashSet::default(),
        });
        tracker.redirect = redirect;
        tracker.noloop = noloop;
        tracker.broken = false;
    }

    /// CLIENT TRACKING OFF: the client's keys are forgotten.
    pub fn disable(&mut self, client: u64) {
        if self.trackers.contains_key(&client) {
            self.forget_client_keys(client);
            self.trackers.remove(&client);
        }
    }

    /// True when some client tracks: only then do commands pay for it.
    pub fn is_active(&self) -> bool {
        !self.trackers.is_empty()
    }

    /// True when some key is remembered: only then do changes pay for it.
    pub fn has_keys(&self) -> bool {
        !self.table.is_empty()
    }

    pub fn state(&self, client: u64) -> Option<TrackingState> {
        self.trackers.get(&client).map(|t| TrackingState { redirect: t.redirect, noloop: t.noloop, broken: t.broken })
    }

    /// Clients in tracking mode (INFO `tracking_clients`).
    pub fn client_count(&self) -> usize {
        self.trackers.len()
    }

    /// Keys remembered (INFO `tracking_total_keys`).
    pub fn key_count(&self) -> usize {
        self.table.len()
    }

    /// (key, client) pairs remembered (INFO `tracking_total_items`).
    pub fn item_count(&self) -> usize {
        self.items
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Sets `tracking-table-max-keys`, invalidating keys past the new bound.
    pub fn set_max_keys(&mut self, max_keys: usize, pubsub: &mut PubSub) {
        self.max_keys = max_keys;
        self.enforce_limit(pubsub);
    }

    /// Marks `client` as the one whose command now runs (0: none); returns
    /// the previous one, to be restored after the command.
    pub fn set_current(&mut self, client: u64) -> u64 {
        std::mem::replace(&mut self.current, client)
    }

    pub fn current(&self) -> u64 {
        self.current
    }

    /// Remembers the keys a read-only command of `client` named, if it
    /// tracks; then keeps the table within its bound.
    pub fn remember<'a>(&mut self, client: u64, keys: impl Iterator<Item = &'a Bytes>, pubsub: &mut PubSub) {
        let Some(tracker) = self.trackers.get_mut(&client) else { return };
        if tracker.broken {
            return;
        }
        for key in keys {
            let clients = match self.table.get_mut(key.as_ref()) {
                Some(clients) => clients,
                // Copied, so that a small key never pins a connection's
                // read buffer.
                None => self.table.entry(Bytes::copy_from_slice(key)).or_default(),
            };
            if !clients.contains(&client) {
                clients.push(client);
                self.items += 1;
            }
            if !tracker.keys.contains(key.as_ref()) {
                let (stored, _) = self.table.get_key_value(key.as_ref()).expect("just inserted");
                tracker.keys.insert(stored.clone());
            }
        }
        self.enforce_limit(pubsub);
    }

    /// `key` changed: every client tracking it is told (but the client that
    /// made the change, `origin`, if it asked for NOLOOP) and the key is
    /// forgotten.
    pub fn invalidate(&mut self, key: &[u8], origin: u64, pubsub: &mut PubSub) {
        let Some((_, key, clients)) = self.table.swap_remove_full(key) else { return };
        self.items -= clients.len();
        for client in clients {
            let Some(tracker) = self.trackers.get_mut(&client) else { continue };
            tracker.keys.remove(&key);
            if tracker.noloop && client == origin {
                continue;
            }
            deliver(pubsub, tracker.redirect, Payload::Keys(std::slice::from_ref(&key)));
        }
        self.shrink_if_sparse();
    }

    /// Every key went (FLUSHDB, FLUSHALL): each tracking client is told
    /// once, with a null payload, and the table is emptied.
    pub fn flush(&mut self, pubsub: &mut PubSub) {
        if self.trackers.is_empty() {
            return;
        }
        self.table = IndexMap::default();
        self.items = 0;
        for tracker in self.trackers.values_mut() {
            tracker.keys = HashSet::default();
            if !tracker.broken {
                deliver(pubsub, tracker.redirect, Payload::Flush);
            }
        }
    }

    /// Past `max_keys`, invalidates random keys until the table fits.
    fn enforce_limit(&mut self, pubsub: &mut PubSub) {
        while self.max_keys > 0 && self.table.len() > self.max_keys {
            let index = self.sampler.index(self.table.len());
            let key = self.table.get_index(index).expect("in range").0.clone();
            self.invalidate(&key, 0, pubsub);
        }
    }

    /// Drops every key remembered for `client` (nothing is sent).
    fn forget_client_keys(&mut self, client: u64) {
        let Some(tracker) = self.trackers.get_mut(&client) else { return };
        for key in std::mem::take(&mut tracker.keys) {
            let Some(clients) = self.table.get_mut(&key) else { continue };
            if let Some(position) = clients.iter().position(|c| *c == client) {
                clients.swap_remove(position);
                self.items -= 1;
            }
            if clients.is_empty() {
                self.table.swap_remove(&key);
            }
        }
        self.shrink_if_sparse();
    }

    /// Gives the table's memory back once most keys are gone (amortized as
    /// the keyspace's own table is).
    fn shrink_if_sparse(&mut self) {
        let capacity = self.table.capacity();
        if capacity > 1024 && self.table.len() < capacity / 4 {
            self.table.shrink_to(self.table.len() * 2);
        }
    }
}

/// Sends an invalidation to a redirect client; dropped unless it is in
/// subscribed mode, as in Redis.
fn deliver(pubsub: &mut PubSub, redirect: u64, payload: Payload<'_>) {
    pubsub.send_to(redirect, &Bytes::from_static(INVALIDATE_CHANNEL), payload);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::store::pubsub::{Kind, Mailbox, Message};

    /// Records the keys of each invalidation (None for a flush); refuses
    /// once `capacity` messages are taken.
    struct Recorder {
        seen: Mutex<Vec<Option<Vec<Bytes>>>>,
        capacity: usize,
    }

    impl Mailbox for Recorder {
        fn deliver(&self, m: &Message<'_>, _: usize) -> bool {
            let mut seen = self.seen.lock();
            if seen.len() == self.capacity {
                return false;
            }
            assert_eq!(m.channel.as_ref(), INVALIDATE_CHANNEL);
            seen.push(match m.payload {
                Payload::Keys(keys) => Some(keys.to_vec()),
                Payload::Flush => None,
                Payload::Bulk(_) => panic!("not an invalidation"),
            });
            true
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn subscribed(pubsub: &mut PubSub, client: u64, capacity: usize) -> Arc<Recorder> {
        let recorder = Arc::new(Recorder { seen: Mutex::new(Vec::new()), capacity });
        let mailbox: Arc<dyn Mailbox> = recorder.clone();
        pubsub.subscribe(client, &mailbox, Kind::Channel, &Bytes::from_static(INVALIDATE_CHANNEL));
        recorder
    }

    #[test]
    fn keys_are_shared_and_fully_reclaimed() {
        let (mut t, mut ps) = (Tracking::default(), PubSub::default());
        let inbox = subscribed(&mut ps, 1, 100);
        assert!(!t.is_active());
        // Clients 10..20 each read 100 keys, half of them shared by all.
        for client in 10..20u64 {
            t.connect(client);
            t.enable(client, 1, false);
            let keys: Vec<Bytes> =
                (0..100).map(|k| b(&format!("k{}", if k < 50 { k } else { client * 1000 + k }))).collect();
            t.remember(client, keys.iter().chain(keys.iter()), &mut ps);
        }
        assert_eq!((t.key_count(), t.item_count(), t.client_count()), (50 + 10 * 50, 10 * 100, 10));
        t.invalidate(b"k0", 0, &mut ps);
        assert_eq!(inbox.seen.lock().len(), 10);
        assert_eq!(t.item_count(), 10 * 99);
        // Half go away, half turn tracking off: nothing is left behind.
        for client in 10..15 {
            t.disconnect(client);
        }
        for client in 15..20 {
            t.disable(client);
        }
        assert_eq!((t.key_count(), t.item_count(), t.client_count()), (0, 0, 0));
        assert!(!t.is_active() && !t.has_keys());
    }

    #[test]
    fn the_table_shrinks_as_tracked_keys_change() {
        let (mut t, mut ps) = (Tracking::default(), PubSub::default());
        t.connect(1);
        t.enable(2, 1, false);
        let keys: Vec<Bytes> = (0..100_000).map(|k| b(&format!("k{k}"))).collect();
        t.remember(2, keys.iter(), &mut ps);
        assert!(t.table.capacity() >= 100_000);
        for key in &keys[1_000..] {
            t.invalidate(key, 0, &mut ps);
        }
        assert_eq!(t.key_count(), 1_000);
        assert!(t.table.capacity() <= 4_096, "capacity {} for {} keys", t.table.capacity(), t.key_count());
    }

    #[test]
    fn a_refusing_redirect_client_is_dropped_from_pubsub() {
        let (mut t, mut ps) = (Tracking::default(), PubSub::default());
        let inbox = subscribed(&mut ps, 1, 1);
        t.enable(2, 1, false);
        t.remember(2, [b("a"), b("b")].iter(), &mut ps);
        t.invalidate(b"a", 0, &mut ps);
        assert!(ps.is_subscribed(1));
        // Over its limit: cut off like a slow subscriber, and nothing more
        // is attempted for it.
        t.invalidate(b"b", 0, &mut ps);
        assert!(!ps.is_subscribed(1));
        t.flush(&mut ps);
        assert_eq!(inbox.seen.lock().as_slice(), &[Some(vec![b("a")])]);
    }

    #[test]
    fn noloop_origin_and_flush() {
        let (mut t, mut ps) = (Tracking::default(), PubSub::default());
        let inbox = subscribed(&mut ps, 1, 100);
        t.enable(2, 1, true);
        t.enable(3, 1, false);
        t.remember(2, [b("k")].iter(), &mut ps);
        t.remember(3, [b("k")].iter(), &mut ps);
        // Client 2 changed it: only 3 is told, and both forget it.
        t.invalidate(b"k", 2, &mut ps);
        assert_eq!(inbox.seen.lock().len(), 1);
        assert_eq!(t.key_count(), 0);
        t.remember(2, [b("k")].iter(), &mut ps);
        t.invalidate(b"k", 0, &mut ps);
        assert_eq!(inbox.seen.lock().len(), 2);
        t.remember(2, [b("k")].iter(), &mut ps);
        t.flush(&mut ps);
        assert_eq!(inbox.seen.lock()[2..], [None, None]);
        assert_eq!((t.key_count(), t.item_count()), (0, 0));
        // Nobody tracking: a flush sends nothing.
        t.disable(2);
        t.disable(3);
        t.flush(&mut ps);
        assert_eq!(inbox.seen.lock().len(), 4);
    }
}

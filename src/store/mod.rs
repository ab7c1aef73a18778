//! The shared store: the keyspace behind a lock, server-wide counters and
//! the background sweep that reclaims expired keys.

mod glob;
mod keyspace;
mod locks;
pub mod notify;
mod pubsub;
mod sample;
pub mod snapshot;
mod tracking;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::resp::Limits;
use crate::shm::Backing;

pub use glob::{glob_match, Glob, MAX_PATTERN_LEN};
pub use keyspace::{
    Entry, EvictionPolicy, Expiry, Keyspace, MemoryLimits, OutOfMemory, Stats, ENTRY_HEADER, VALUE_TYPE,
};
pub use locks::{Acquire, Grant, LockTable};
pub use pubsub::{Kind, Mailbox, Message, Payload, PubSub};
pub use tracking::{Tracking, TrackingState, INVALIDATE_CHANNEL};

/// Keys reclaimed per lock hold by the sweep, so a mass expiry never stalls
/// the commands of the workers for long.
const SWEEP_BATCH: usize = 2_000;
/// Also bounds how late a lock whose ttl passed is handed over.
const SWEEP_INTERVAL: Duration = Duration::from_millis(50);
/// Store memory freed (by deletes, expiry, eviction or a flush) before the
/// allocator is told to return its free pages at once; smaller drops come
/// back with the allocator's own decay, about a second later (src/alloc.rs).
const RELEASE_AFTER: usize = 16 * 1024 * 1024;
/// At most one purge this often, so that a long mass deletion does not purge
/// over and over.
const RELEASE_INTERVAL: Duration = Duration::from_secs(1);
/// Entries the sweep moves per pass when it compacts mostly free stripes
/// (`Keyspace::compact`): a few milliseconds of one stripe's lock.
const COMPACT_BUDGET: usize = 20_000;
/// Chunk memory compaction gave back to the store's heap before its pages
/// are returned to the system (the memory had already left `used_memory`
/// when its entries were freed, perhaps before a release).
const COMPACTED_RELEASE_AFTER: u64 = 1024 * 1024;

/// Counters that live outside the keyspace lock.
#[derive(Default)]
pub struct Counters {
    pub connected_clients: AtomicUsize,
    pub total_connections_received: AtomicU64,
    pub total_commands_processed: AtomicU64,
    /// Replies and messages queued for clients and not yet written.
    pub output_buffer_bytes: Arc<AtomicUsize>,
    next_client_id: AtomicU64,
}

impl Counters {
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Settings CONFIG GET reports; the broker fills in where it listens.
#[derive(Clone, Debug)]
pub struct Config {
    pub unixsocket: String,
    /// What the decoder accepts from an authenticated client
    /// (`proto-max-bulk-len` and friends).
    pub limits: Limits,
    /// Unparsed input a client may pile up before it is disconnected.
    pub query_buffer_limit: usize,
    /// The secret a connection must AUTH with first; None lets anyone in
    /// who can reach the socket. Never reported by CONFIG GET or INFO.
    pub requirepass: Option<bytes::Bytes>,
    /// Where the keyspace is saved on shutdown and by SAVE.
    pub snapshot: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unixsocket: String::new(),
            limits: Limits::default(),
            query_buffer_limit: 1024 * 1024 * 1024,
            requirepass: None,
            snapshot: None,
        }
    }
}

struct Shared {
    keyspace: Mutex<Keyspace>,
    config: RwLock<Config>,
    counters: Counters,
    started: Instant,
    run_id: String,
}

/// Cheap to clone handle on the one store of a broker. Commands from sockets
/// and from the primary's own JS thread all go through [`Db::lock`], which is
/// what makes each command atomic with respect to every other.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

impl Default for Db {
    fn default() -> Self {
        Self::new()
    }
}

impl Db {
    /// The broker's: a Db over a keyspace in a new store of its own, in
    /// memory no file names (an in-process store, and tests).
    pub fn new() -> Db {
        Self::attached(Keyspace::new())
    }

    /// The broker's: a Db over a keyspace in a new store of its own, in
    /// memory of the kind `backing` names.
    pub fn in_new_store(backing: &Backing) -> std::io::Result<Db> {
        Ok(Self::attached(Keyspace::in_new_store(backing)?))
    }

    /// A Db over a keyspace of a store another process (the broker) shares:
    /// what an attached process runs its data commands on.
    pub fn attached(keyspace: Keyspace) -> Db {
        Db {
            shared: Arc::new(Shared {
                keyspace: Mutex::new(keyspace),
                config: RwLock::new(Config::default()),
                counters: Counters::default(),
                started: Instant::now(),
                run_id: random_hex(20),
            }),
        }
    }

    /// The broker's keyspace. When the guard goes, attached processes are
    /// told whether their changes must now go through the broker (someone
    /// started or stopped listening for them).
    pub fn lock(&self) -> KeyspaceGuard<'_> {
        KeyspaceGuard(self.shared.keyspace.lock())
    }

    pub fn config(&self) -> Config {
        self.shared.config.read().clone()
    }

    /// The decoder limits and query buffer limit, read by connections on
    /// every read (cheaper than cloning the whole [`Config`]).
    pub fn input_limits(&self) -> (Limits, usize) {
        let config = self.shared.config.read();
        (config.limits, config.query_buffer_limit)
    }

    pub fn update_config(&self, change: impl FnOnce(&mut Config)) {
        change(&mut self.shared.config.write());
    }

    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    pub fn uptime(&self) -> Duration {
        self.shared.started.elapsed()
    }

    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// Reclaims expired keys and releases locks whose ttl passed, in the
    /// background, until `stop` resolves; compacts mostly free stripes and
    /// hands memory the store freed back to the OS.
    pub async fn sweep_expired(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut last_release: Option<Instant> = None;
        let mut compacted = 0;
        loop {
            let (full_batch, release) = {
                let now = now_ms();
                let mut ks = self.lock();
                ks.maintain(now);
                ks.locks.expire(now);
                let full_batch = ks.purge_expired(now, SWEEP_BATCH) == SWEEP_BATCH;
                compacted += ks.compact(COMPACT_BUDGET);
                let release = (ks.released_memory() >= RELEASE_AFTER || compacted >= COMPACTED_RELEASE_AFTER)
                    && last_release.is_none_or(|at| at.elapsed() >= RELEASE_INTERVAL);
                if release {
                    ks.mark_released();
                    compacted = 0;
                }
                (full_batch, release)
            };
            if release {
                last_release = Some(Instant::now());
                // On a blocking thread: purging the pages of a 1 GiB store takes
                // a while (the kernel unmaps every one), and the broker's
                // thread goes on serving meanwhile.
                let _ = tokio::task::spawn_blocking(crate::alloc::release_free_memory).await;
                self.lock().release_free_pages();
            }
            if full_batch {
                // More are due: let other tasks take the lock, then go on.
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

pub struct KeyspaceGuard<'a>(MutexGuard<'a, Keyspace>);

impl std::ops::Deref for KeyspaceGuard<'_> {
    type Target = Keyspace;
    fn deref(&self) -> &Keyspace {
        &self.0
    }
}

impl std::ops::DerefMut for KeyspaceGuard<'_> {
    fn deref_mut(&mut self) -> &mut Keyspace {
        &mut self.0
    }
}

impl Drop for KeyspaceGuard<'_> {
    fn drop(&mut self) {
        self.0.publish_listening();
    }
}

/// Wall-clock Unix time in milliseconds, the unit of every expiry.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Hex digits from the OS's random source (run ids, secrets).
pub fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok();
    if !filled {
        // No /dev/urandom (Windows): fall back to std's randomly keyed hasher.
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(Instant::now().elapsed().as_nanos());
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

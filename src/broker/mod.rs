//! The broker: a RESP server on a Unix domain socket, running on its own
//! tokio threads, plus the in-process entry point the primary uses.

mod connection;

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub use connection::{execute_local, LocalReply};

use crate::resp::Limits;
use crate::shm::Backing;
use crate::store::{now_ms, random_hex, snapshot, Db};

/// How long a closing broker waits for connections to flush their replies.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const SOCKET_NAME: &str = "broker.sock";
const DIR_PREFIX: &str = "cluster-shm-";
/// Set to `file` in the broker's environment, this puts the store in a file
/// in the broker's directory on Linux too, as on every other system (what
/// the tests of that backing use); unset or anything else, a memfd.
pub const STORE_BACKING_VAR: &str = "CLUSTER_SHM_STORE_BACKING";

#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// Listen here instead of in a fresh private directory (standalone use).
    pub socket: Option<PathBuf>,
    pub limits: Limits,
    /// Connections must AUTH with this before anything else.
    pub secret: Option<String>,
}

pub struct Broker {
    db: Db,
    socket: PathBuf,
    /// The private directory this broker created and removes on close.
    owned_dir: Option<PathBuf>,
    runtime: Option<Runtime>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Broker {
    pub fn start(options: BrokerOptions) -> io::Result<Broker> {
        // One I/O thread: every command runs under the store lock anyway, and
        // a second thread only added cross-thread wake-ups between a
        // connection's reading and writing tasks (redis-benchmark -P 16 GET
        // went from 0.7-0.9x to about 1.0x redis-server on 2 cores).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cluster-shm-broker")
            .enable_all()
            .build()?;
        let (owned_dir, socket) = match options.socket {
            Some(path) => {
                remove_stale_socket(&path)?;
                (None, path)
            }
            None => {
                let dir = create_private_dir(&runtime)?;
                let socket = dir.join(SOCKET_NAME);
                (Some(dir), socket)
            }
        };
        let remove_owned_dir = || {
            if let Some(dir) = &owned_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        };
        if let Err(error) = check_socket_length(&socket) {
            remove_owned_dir();
            return Err(error);
        }
        let backing = store_backing(&socket);
        // Off Linux the file is the only way to share the store; without it
        // (a file system that cannot map it shared) the broker still runs,
        // on memory only it maps, and other processes go through its socket
        // (their SHM.ATTACH is refused, saying so).
        let made = Db::in_new_store(&backing).or_else(|error| match backing {
            Backing::FileIn(_) if !cfg!(target_os = "linux") => Db::in_new_store(&Backing::Anonymous),
            _ => Err(error),
        });
        let db = match made {
            Ok(db) => db,
            Err(error) => {
                remove_owned_dir();
                return Err(io::Error::new(error.kind(), format!("cannot make the shared store: {error}")));
            }
        };
        let listener = match runtime.block_on(async { UnixListener::bind(&socket) }) {
            Ok(listener) => listener,
            Err(error) => {
                remove_owned_dir();
                return Err(error);
            }
        };
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))?;

        crate::alloc::start_background_purging();
        db.update_config(|c| {
            c.unixsocket = socket.display().to_string();
            c.limits = options.limits;
            c.requirepass = options.secret.map(bytes::Bytes::from);
        });
        let (shutdown, stop) = watch::channel(false);
        runtime.spawn(db.clone().sweep_expired(stop.clone()));
        let server = runtime.spawn(accept_loop(listener, db.clone(), stop));
        Ok(Broker { db, socket, owned_dir, runtime: Some(runtime), shutdown, server: Some(server) })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Loads the snapshot at `path` (if it exists) and saves there on close.
    pub fn persist_to(&self, path: PathBuf) -> io::Result<usize> {
        let loaded = snapshot::load(&self.db, &path, now_ms())?;
        self.db.update_config(|c| c.snapshot = Some(path));
        Ok(loaded)
    }

    pub fn is_running(&self) -> bool {
        self.runtime.is_some()
    }

    /// Stops accepting, lets open connections flush their replies, and
    /// removes the socket (and the private directory). Idempotent. Fails
    /// only when the final snapshot could not be written (all else is done
    /// by then), so that the process can say so and exit non-zero.
    pub fn close(&mut self) -> io::Result<()> {
        let Some(runtime) = self.runtime.take() else {
            return Ok(());
        };
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = runtime
                .block_on(async { tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_millis(500), server).await });
        }
        // Attached processes stop writing to the store directly; what they
        // wrote before is in it once this returns.
        self.db.lock().close_store();
        // Every acknowledged write is in the store now: keep it for the next start.
        let saved = match self.db.config().snapshot {
            Some(path) => snapshot::save(&self.db, &path, now_ms()).map(|_| ()).map_err(|error| {
                io::Error::new(error.kind(), format!("could not write the snapshot {}: {error}", path.display()))
            }),
            None => Ok(()),
        };
        let _ = std::fs::remove_file(&self.socket);
        if let Some(dir) = &self.owned_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        runtime.shutdown_timeout(Duration::from_millis(200));
        saved
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            eprintln!("cluster-shm: {error}");
        }
    }
}

async fn accept_loop(listener: UnixListener, db: Db, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let raw_fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                    let counters = db.counters();
                    counters.total_connections_received.fetch_add(1, Ordering::Relaxed);
                    counters.connected_clients.fetch_add(1, Ordering::Relaxed);
                    let db = db.clone();
                    let stop = stop.clone();
                    connections.spawn(async move {
                        connection::serve(stream, Some(raw_fd), db.clone(), stop).await;
                        db.counters().connected_clients.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                // Out of descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
        connections.abort_all();
    }
}

/// The memory of the broker's store. On Linux a memfd, unless
/// [`STORE_BACKING_VAR`] asks for a file; elsewhere a file in the socket's
/// directory: the private directory the broker made, or the one holding
/// the socket it was given, which clients check is out of other users'
/// reach before they connect.
fn store_backing(socket: &Path) -> Backing {
    let wants_file = std::env::var_os(STORE_BACKING_VAR).is_some_and(|value| value == "file");
    if cfg!(target_os = "linux") && !wants_file {
        return Backing::without_file();
    }
    let dir = match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Backing::FileIn(dir.to_path_buf())
}

/// Creates `<tmp>/cluster-shm-<pid>-<random>` with mode 0700, after removing
/// directories left by earlier brokers of this user that are gone.
fn create_private_dir(runtime: &Runtime) -> io::Result<PathBuf> {
    let base = std::env::temp_dir();
    let dir = base.join(format!("{DIR_PREFIX}{}-{}", std::process::id(), random_hex(6)));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    if let Ok(uid) = std::fs::metadata(&dir).map(|m| m.uid()) {
        runtime.block_on(remove_abandoned_dirs(&base, uid));
    }
    Ok(dir)
}

/// A primary killed with SIGKILL cannot clean up; its successor does. A
/// directory goes only when its socket refuses connections: the pid in its
/// name says nothing about a primary in another PID namespace sharing this
/// temp directory (two containers with one /tmp volume), and a directory
/// without a socket may belong to a broker that is starting.
async fn remove_abandoned_dirs(base: &Path, uid: u32) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else { continue };
        if rest.split('-').next().and_then(|p| p.parse::<u32>().ok()).is_none() {
            continue;
        }
        // Not followed if it is a symlink: only real directories of this user.
        let owned = entry.metadata().map(|m| m.is_dir() && m.uid() == uid).unwrap_or(false);
        if owned && socket_refuses(&entry.path().join(SOCKET_NAME)).await {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// True only when nothing listens on the socket at `path`. A connection
/// that cannot be made at once for another reason (a full backlog of a
/// stopped broker) counts as alive; the connect never blocks.
async fn socket_refuses(path: &Path) -> bool {
    let connecting = tokio::net::UnixStream::connect(path);
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connecting).await,
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionRefused
    )
}

/// A Unix socket's path must fit its address (107 bytes on Linux, 103 on
/// macOS): said plainly, with what to change, instead of the system's
/// "path must be shorter than SUN_LEN".
fn check_socket_length(socket: &Path) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_un is valid; only its field's size is read.
    let capacity = std::mem::size_of_val(&unsafe { std::mem::zeroed::<libc::sockaddr_un>() }.sun_path);
    let length = socket.as_os_str().len();
    if length < capacity {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "its socket path {} is {length} bytes, over the {} a Unix socket's path may have here: choose a shorter directory (TMPDIR or XDG_RUNTIME_DIR for the default one, or the socket option)",
            socket.display(),
            capacity - 1
        ),
    ))
}

/// A socket file nobody listens on is left by a broker that was killed; a
/// live one means another broker owns the path.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a broker is already listening on {}", path.display()),
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

//! Native connections, with the `redis` crate, to a broker in another
//! process, for blocking calls (lock waits): each wait runs on a connection
//! of its own from a small pool, so it never holds up the replies of the
//! process's shared connection (lib/connection.js, driven from the JS
//! thread). Connections open with a retry and backoff bounded by the connect
//! timeout, only through a socket directory out of other users' reach
//! (src/trusted_socket.rs), authenticate with the broker's secret, and a
//! failed one is dropped. The helpers here also serve the pub/sub connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::ShmError;
use crate::resp::Frame;
use crate::trusted_socket::trusted_socket_path;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub socket: PathBuf,
    /// How long a call waits for a connection before it fails as unreachable.
    pub connect_timeout: Duration,
    /// How long a call waits for its reply once sent.
    pub command_timeout: Duration,
    /// The broker's secret, sent with AUTH on every new connection.
    pub secret: Option<String>,
}

pub struct Client {
    options: ClientOptions,
    /// Idle connections for blocking commands (lock waits), which must not
    /// hold up the replies of the shared connection. Never closed while
    /// idle: locks taken on one belong to it.
    blocking: Mutex<Vec<MultiplexedConnection>>,
    /// Connections whose wait was granted a lock, by the lock's token. A lock
    /// belongs to its connection, so such a connection waits for nothing
    /// else (were that wait to time out, dropping the connection would
    /// release the lock too); it goes back to the pool once the lock is
    /// released ([`Client::released`]).
    holding: Mutex<HashMap<Bytes, MultiplexedConnection>>,
    closed: AtomicBool,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, ShmError> {
        Ok(Client {
            options,
            blocking: Mutex::new(Vec::new()),
            holding: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// Sends a command that may block for up to `wait` (a lock wait) on a
    /// connection of its own.
    pub async fn call_blocking(&self, args: Vec<Bytes>, wait: Duration) -> Result<Frame, ShmError> {
        let idle = self.blocking.lock().pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.open(None).await?,
        };
        let command = packed(&args);
        let limit = wait + self.options.command_timeout;
        match tokio::time::timeout(limit, connection.send_packed_command(&command)).await {
            Ok(Ok(value)) => {
                let reply = frame_from_value(value);
                if !self.closed.load(Ordering::Acquire) {
                    match (&reply, args.get(2)) {
                        (Frame::Integer(_), Some(token)) if crate::cmd::is(&args[0], "SHM.LOCK") => {
                            self.holding.lock().insert(token.clone(), connection);
                        }
                        _ => self.blocking.lock().push(connection),
                    }
                }
                self.checked(reply)
            }
            Ok(Err(error)) => {
                let error = self.map_error(error);
                if matches!(error, ShmError::Server(_)) {
                    self.blocking.lock().push(connection);
                }
                Err(error)
            }
            // Dropping the connection withdraws the wait in the broker (and
            // passes on a lock that was handed over too late).
            Err(_) => Err(self.timeout()),
        }
    }

    /// Opens a connection, retrying with backoff for up to the connect timeout.
    async fn open(&self, response_timeout: Option<Duration>) -> Result<MultiplexedConnection, ShmError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ShmError::Closed);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(response_timeout)
            .set_pipeline_buffer_size(4096);
        let mut last_error = String::from("connect timeout");
        let attempts = async {
            let mut delay = Duration::from_millis(10);
            loop {
                match redis_client(&self.options) {
                    Ok(redis) => match redis.get_multiplexed_async_connection_with_config(&config).await {
                        Ok(connection) => return Ok(connection),
                        // A refused secret will not get better by retrying.
                        Err(error) if is_auth_error(&error) => return Err(auth_error(&self.options)),
                        Err(error) => last_error = error.to_string(),
                    },
                    // Neither will a socket another user could have put there.
                    Err(error @ ShmError::UnsafeSocket(_)) => return Err(error),
                    // A directory that is not there yet may be by the next attempt.
                    Err(error) => last_error = error.to_string(),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        };
        let connection = match tokio::time::timeout(self.options.connect_timeout, attempts).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(error)) => return Err(error),
            Err(_) => return Err(self.unreachable(&last_error)),
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(ShmError::Closed);
        }
        Ok(connection)
    }

    fn unreachable(&self, why: &str) -> ShmError {
        ShmError::Unreachable(format!(
            "cannot reach the cluster-shm broker at {} within {} ms ({why})",
            self.options.socket.display(),
            self.options.connect_timeout.as_millis()
        ))
    }

    /// A reply refusing this connection for want of the secret is an
    /// authentication failure, not an ordinary server error.
    fn checked(&self, reply: Frame) -> Result<Frame, ShmError> {
        match &reply {
            Frame::Error(text) if text.starts_with("NOAUTH ") || text.starts_with("WRONGPASS ") => {
                Err(auth_error(&self.options))
            }
            _ => Ok(reply),
        }
    }

    fn timeout(&self) -> ShmError {
        ShmError::Timeout(format!("no reply from the broker within {} ms", self.options.command_timeout.as_millis()))
    }

    fn map_error(&self, error: redis::RedisError) -> ShmError {
        if is_auth_error(&error) {
            return auth_error(&self.options);
        }
        if let Some(code) = error.code() {
            return ShmError::Server(match error.detail() {
                Some(detail) => format!("{code} {detail}"),
                None => code.to_string(),
            });
        }
        if error.is_timeout() {
            return self.timeout();
        }
        ShmError::Unreachable(format!(
            "lost the connection to the cluster-shm broker at {}: {error}",
            self.options.socket.display()
        ))
    }

    /// The lock granted with `token` was released (or lost): its connection
    /// may wait again.
    pub fn released(&self, token: &[u8]) {
        let Some(connection) = self.holding.lock().remove(token) else { return };
        if !self.closed.load(Ordering::Acquire) {
            self.blocking.lock().push(connection);
        }
    }

    /// Drops the connections; later calls fail with [`ShmError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.blocking.lock().clear();
        self.holding.lock().clear();
    }
}

/// A `redis` crate client for the broker these options name, reaching it
/// through the real path of its socket's directory once that is found out
/// of other users' reach; made anew for each connection, so that each one
/// is checked.
pub fn redis_client(options: &ClientOptions) -> Result<redis::Client, ShmError> {
    let socket = trusted_socket_path(&options.socket)?;
    let mut info = ConnectionAddr::Unix(socket)
        .into_connection_info()
        .map_err(|e| ShmError::BadArgument(format!("invalid broker address: {e}")))?;
    if let Some(secret) = &options.secret {
        let settings = info.redis_settings().clone().set_password(secret);
        info = info.set_redis_settings(settings);
    }
    redis::Client::open(info).map_err(|e| ShmError::BadArgument(e.to_string()))
}

pub fn is_auth_error(error: &redis::RedisError) -> bool {
    matches!(error.code(), Some("NOAUTH" | "WRONGPASS")) || error.kind() == redis::ErrorKind::AuthenticationFailed
}

/// The error for a refused secret; it never contains the secret.
pub fn auth_error(options: &ClientOptions) -> ShmError {
    ShmError::Auth(format!(
        "the cluster-shm broker at {} refused this process: {}",
        options.socket.display(),
        if options.secret.is_some() {
            "wrong secret (CLUSTER_SHM_AUTH)"
        } else {
            "it requires a secret (CLUSTER_SHM_AUTH)"
        }
    ))
}

fn packed(args: &[Bytes]) -> redis::Cmd {
    let mut command = redis::Cmd::new();
    for arg in args {
        command.arg(arg.as_ref());
    }
    command
}

fn frame_from_value(value: redis::Value) -> Frame {
    use redis::Value;
    match value {
        Value::Nil => Frame::Null,
        Value::Int(n) => Frame::Integer(n),
        Value::BulkString(bytes) => Frame::Bulk(Bytes::from(bytes)),
        Value::Array(items) | Value::Set(items) => Frame::Array(items.into_iter().map(frame_from_value).collect()),
        Value::Push { data, .. } => Frame::Array(data.into_iter().map(frame_from_value).collect()),
        Value::Map(pairs) => {
            Frame::Array(pairs.into_iter().flat_map(|(k, v)| [frame_from_value(k), frame_from_value(v)]).collect())
        }
        Value::Attribute { data, .. } => frame_from_value(*data),
        Value::SimpleString(text) => Frame::Simple(text),
        Value::Okay => Frame::ok(),
        Value::Double(x) => Frame::bulk(x.to_string()),
        Value::Boolean(b) => Frame::Integer(b as i64),
        Value::VerbatimString { text, .. } => Frame::bulk(text),
        Value::ServerError(error) => Frame::Error(match error.details() {
            Some(detail) => format!("{} {detail}", error.code()),
            None => error.code().to_string(),
        }),
        other => Frame::bulk(format!("{other:?}")),
    }
}

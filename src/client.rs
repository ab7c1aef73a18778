//! What the native connections to a broker in another process (the pub/sub
//! connection, src/subscriber.rs) share: their options, the `redis` crate
//! client for the broker's socket, reached only through a socket directory
//! out of other users' reach (src/trusted_socket.rs), and the error for a
//! refused secret. Every other call goes through the JS-side connection
//! (lib/connection.js), lock waits included.

use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::ShmError;
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

/// What this process ran out of, when that is why `error` happened: open
/// files (EMFILE, ENFILE) or memory (ENOMEM), the same numbers on Linux and
/// macOS.
pub fn out_of(error: &redis::RedisError) -> Option<&'static str> {
    let source = std::error::Error::source(error)?;
    let io = match source.downcast_ref::<std::io::Error>() {
        Some(io) => io,
        None => source.downcast_ref::<std::sync::Arc<dyn std::error::Error + Send + Sync>>()?.downcast_ref()?,
    };
    match io.raw_os_error()? {
        24 => Some("open files (its limit: ulimit -n)"),
        23 => Some("open files (the system-wide limit)"),
        12 => Some("memory"),
        _ => None,
    }
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

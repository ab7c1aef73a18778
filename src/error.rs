//! Errors that reach JavaScript, each with a stable code.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShmError {
    /// No broker answered within the connect timeout.
    Unreachable(String),
    /// This process ran out of a system resource (open files, memory)
    /// connecting to the broker.
    NoResources(String),
    /// A sent command got no reply within the command timeout.
    Timeout(String),
    /// The broker (or Redis) answered with an error reply; the text keeps
    /// the reply's own prefix (`ERR`, `WRONGTYPE`, ...).
    Server(String),
    /// The client or broker was closed by the application.
    Closed,
    /// An argument the native layer cannot use.
    BadArgument(String),
    /// The broker could not start (socket directory, bind).
    BrokerStart(String),
    /// The broker refused this process's secret (or it has none).
    Auth(String),
    /// A snapshot file could not be read or written.
    Snapshot(String),
    /// The broker socket's directory is within another user's reach: the
    /// secret is not sent there (src/trusted_socket.rs).
    UnsafeSocket(String),
}

impl ShmError {
    pub fn code(&self) -> &'static str {
        match self {
            ShmError::Unreachable(_) => "ERR_SHM_UNREACHABLE",
            ShmError::NoResources(_) => "ERR_SHM_NO_RESOURCES",
            ShmError::Timeout(_) => "ERR_SHM_TIMEOUT",
            ShmError::Server(_) => "ERR_SHM_SERVER",
            ShmError::Closed => "ERR_SHM_CLOSED",
            ShmError::BadArgument(_) => "ERR_SHM_BAD_ARGUMENT",
            ShmError::BrokerStart(_) => "ERR_SHM_BROKER_START",
            ShmError::Auth(_) => "ERR_SHM_AUTH",
            ShmError::Snapshot(_) => "ERR_SHM_SNAPSHOT",
            ShmError::UnsafeSocket(_) => "ERR_SHM_UNSAFE_SOCKET",
        }
    }
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::Closed => f.write_str("the cluster-shm connection is closed"),
            ShmError::Unreachable(m)
            | ShmError::NoResources(m)
            | ShmError::Timeout(m)
            | ShmError::Server(m)
            | ShmError::BadArgument(m)
            | ShmError::BrokerStart(m)
            | ShmError::Auth(m)
            | ShmError::Snapshot(m)
            | ShmError::UnsafeSocket(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ShmError {}

/// Native errors carry their code as the first word of the message; the JS
/// layer turns that into an `Error` of its own realm with `err.code` set.
#[cfg(feature = "node")]
impl From<ShmError> for napi::Error {
    fn from(error: ShmError) -> napi::Error {
        napi::Error::new(napi::Status::GenericFailure, format!("{} {}", error.code(), error))
    }
}

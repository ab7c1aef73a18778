//! The client a process uses to reach a broker it does not host: one
//! multiplexed connection from the `redis` crate, opened on first use,
//! reconnected with backoff, with automatic pipelining (requests issued while
//! a write is in flight leave together).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::ShmError;
use crate::resp::Frame;

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub socket: PathBuf,
    /// How long a call waits for a connection before it fails as unreachable.
    pub connect_timeout: Duration,
    /// How long a call waits for its reply once sent.
    pub command_timeout: Duration,
}

pub struct Client {
    redis: redis::Client,
    options: ClientOptions,
    connection: Mutex<Option<ConnectionManager>>,
    /// Serialises connection attempts so concurrent first calls share one.
    connecting: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, ShmError> {
        let info = ConnectionAddr::Unix(options.socket.clone())
            .into_connection_info()
            .map_err(|e| ShmError::BadArgument(format!("invalid broker address: {e}")))?;
        let redis = redis::Client::open(info).map_err(|e| ShmError::BadArgument(e.to_string()))?;
        Ok(Client {
            redis,
            options,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
        })
    }

    /// Sends one command and waits for its reply.
    pub async fn call(&self, args: Vec<Bytes>) -> Result<Frame, ShmError> {
        let mut connection = self.connection().await?;
        let mut command = redis::Cmd::new();
        for arg in &args {
            command.arg(arg.as_ref());
        }
        let reply = tokio::time::timeout(self.options.command_timeout, connection.send_packed_command(&command)).await;
        match reply {
            Err(_) => Err(ShmError::Timeout(format!(
                "no reply from the broker within {} ms",
                self.options.command_timeout.as_millis()
            ))),
            Ok(Ok(value)) => Ok(frame_from_value(value)),
            Ok(Err(error)) => Err(self.map_error(error)),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, ShmError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ShmError::Closed);
        }
        if let Some(existing) = self.connection.lock().clone() {
            return Ok(existing);
        }
        let _gate = self.connecting.lock().await;
        if let Some(existing) = self.connection.lock().clone() {
            return Ok(existing);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.command_timeout))
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(1000))
            .set_exponent_base(2.0)
            .set_number_of_retries(usize::MAX)
            .set_pipeline_buffer_size(4096);
        let attempt = ConnectionManager::new_with_config(self.redis.clone(), config);
        let manager = match tokio::time::timeout(self.options.connect_timeout, attempt).await {
            Ok(Ok(manager)) => manager,
            Ok(Err(error)) => return Err(self.unreachable(&error.to_string())),
            Err(_) => return Err(self.unreachable("connect timeout")),
        };
        *self.connection.lock() = Some(manager.clone());
        Ok(manager)
    }

    fn unreachable(&self, why: &str) -> ShmError {
        ShmError::Unreachable(format!(
            "cannot reach the cluster-shm broker at {} within {} ms ({why})",
            self.options.socket.display(),
            self.options.connect_timeout.as_millis()
        ))
    }

    fn map_error(&self, error: redis::RedisError) -> ShmError {
        if let Some(code) = error.code() {
            return ShmError::Server(match error.detail() {
                Some(detail) => format!("{code} {detail}"),
                None => code.to_string(),
            });
        }
        if error.is_timeout() {
            return ShmError::Timeout(format!("no reply from the broker within {} ms", self.options.command_timeout.as_millis()));
        }
        self.unreachable(&error.to_string())
    }

    /// Drops the connection; later calls fail with [`ShmError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.connection.lock().take();
    }
}

fn frame_from_value(value: redis::Value) -> Frame {
    use redis::Value;
    match value {
        Value::Nil => Frame::Null,
        Value::Int(n) => Frame::Integer(n),
        Value::BulkString(bytes) => Frame::Bulk(Bytes::from(bytes)),
        Value::Array(items) | Value::Set(items) => Frame::Array(items.into_iter().map(frame_from_value).collect()),
        Value::Push { data, .. } => Frame::Array(data.into_iter().map(frame_from_value).collect()),
        Value::Map(pairs) => Frame::Array(
            pairs.into_iter().flat_map(|(k, v)| [frame_from_value(k), frame_from_value(v)]).collect(),
        ),
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

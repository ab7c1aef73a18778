//! cluster-shm: shared state for Node.js cluster workers.
//!
//! The primary hosts a broker (a RESP server on a Unix socket, on its own
//! threads) and calls its store in-process; other processes reach it with a
//! pipelining client. This file is only the N-API surface.

pub mod broker;
pub mod client;
pub mod cmd;
pub mod error;
mod js_value;
pub mod resp;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Either, PromiseRaw};
use napi::Env;
use napi_derive::napi;
use parking_lot::Mutex;

use crate::broker::LocalReply;
use crate::cmd::Session;
use crate::error::ShmError;
use crate::js_value::{Args, Reply};
use crate::resp::Limits;

#[napi(object)]
pub struct BrokerOptions {
    /// Listen on this path instead of a fresh private directory.
    pub socket: Option<String>,
    /// Largest bulk string accepted from a client, in bytes.
    pub max_bulk_len: Option<u32>,
}

/// The broker hosted by this process, and in-process access to its store.
#[napi(js_name = "Broker")]
pub struct NativeBroker {
    broker: Mutex<broker::Broker>,
    session: Mutex<Session>,
}

#[napi]
impl NativeBroker {
    #[napi(factory)]
    pub fn start(options: Option<BrokerOptions>) -> napi::Result<NativeBroker> {
        let options = options.unwrap_or(BrokerOptions { socket: None, max_bulk_len: None });
        let mut limits = Limits::default();
        if let Some(max) = options.max_bulk_len {
            limits.max_bulk_len = max as usize;
        }
        let broker = broker::Broker::start(broker::BrokerOptions { socket: options.socket.map(PathBuf::from), limits })
            .map_err(|e| ShmError::BrokerStart(format!("cannot start the cluster-shm broker: {e}")))?;
        let session = Session::new(broker.db().counters().next_client_id());
        Ok(NativeBroker { broker: Mutex::new(broker), session: Mutex::new(session) })
    }

    #[napi(getter)]
    pub fn socket(&self) -> String {
        self.broker.lock().socket_path().display().to_string()
    }

    /// Runs a command against the store on the calling thread. A blocking
    /// command (a lock wait) returns a Promise of its reply instead.
    #[napi(ts_args_type = "args: Array<string | Buffer>", ts_return_type = "unknown")]
    pub fn call<'env>(&self, env: &'env Env, args: Args) -> napi::Result<Either<Reply, PromiseRaw<'env, Reply>>> {
        let broker = self.broker.lock();
        if !broker.is_running() {
            return Err(ShmError::Closed.into());
        }
        let db = broker.db().clone();
        drop(broker);
        let reply = broker::execute_local(&db, &mut self.session.lock(), &args.0);
        match reply {
            LocalReply::Ready(frame) => Ok(Either::A(Reply(frame).into_result()?)),
            LocalReply::Blocked(blocked) => {
                Ok(Either::B(env.spawn_future(async move { Reply(blocked.reply(&db).await).into_result() })?))
            }
        }
    }

    /// Stops the broker and removes its socket. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.broker.lock().close();
    }
}

#[napi(object)]
pub struct ClientOptions {
    pub socket: String,
    /// Milliseconds a call waits for a connection before failing.
    pub connect_timeout: Option<u32>,
    /// Milliseconds a call waits for its reply.
    pub command_timeout: Option<u32>,
}

/// A connection to a broker in another process.
#[napi(js_name = "Client")]
pub struct NativeClient {
    inner: Arc<client::Client>,
}

#[napi]
impl NativeClient {
    #[napi(constructor)]
    pub fn new(options: ClientOptions) -> napi::Result<NativeClient> {
        let inner = client::Client::new(client::ClientOptions {
            socket: PathBuf::from(options.socket),
            connect_timeout: Duration::from_millis(options.connect_timeout.unwrap_or(5_000) as u64),
            command_timeout: Duration::from_millis(options.command_timeout.unwrap_or(10_000) as u64),
        })?;
        Ok(NativeClient { inner: Arc::new(inner) })
    }

    #[napi(ts_args_type = "args: Array<string | Buffer>", ts_return_type = "Promise<unknown>")]
    pub fn call<'env>(&self, env: &'env Env, args: Args) -> napi::Result<PromiseRaw<'env, Reply>> {
        let client = self.inner.clone();
        env.spawn_future(async move {
            match client.call(args.0).await {
                Ok(frame) => Reply(frame).into_result(),
                Err(error) => Err(error.into()),
            }
        })
    }

    /// Sends a command that may block for up to `waitMs` on a connection of
    /// its own, so the replies of the shared connection keep flowing.
    #[napi(ts_args_type = "args: Array<string | Buffer>, waitMs: number", ts_return_type = "Promise<unknown>")]
    pub fn call_blocking<'env>(
        &self,
        env: &'env Env,
        args: Args,
        wait_ms: u32,
    ) -> napi::Result<PromiseRaw<'env, Reply>> {
        let client = self.inner.clone();
        env.spawn_future(async move {
            match client.call_blocking(args.0, Duration::from_millis(wait_ms as u64)).await {
                Ok(frame) => Reply(frame).into_result(),
                Err(error) => Err(error.into()),
            }
        })
    }

    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

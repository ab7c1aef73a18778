//! The N-API surface: the classes JavaScript sees (`Broker` and
//! `Subscriber`) and their conversions. Everything here is glue; the work
//! happens in the modules it calls.

mod js_value;
mod plain_fn;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either, FromNapiValue, Function, Object, PromiseRaw, ToNapiValue, Undefined};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{sys, Env, JsValue};
use napi_derive::napi;
use parking_lot::Mutex;

use crate::broker::{self, LocalReply};
use crate::cmd::{self, Ctx, Session};
use crate::error::ShmError;
use crate::resp::{Frame, Limits};
use crate::store::{now_ms, Db, Keyspace, Kind};
use crate::subscriber;
use js_value::{Arg, Args, JsRaw, Reply, TextReply, ValueArg};

#[napi(object)]
pub struct BrokerOptions {
    /// Listen on this path instead of a fresh private directory.
    pub socket: Option<String>,
    /// Largest bulk string accepted from a client, in bytes.
    pub max_bulk_len: Option<u32>,
    /// Connections must AUTH with this secret before anything else.
    pub auth_secret: Option<String>,
}

/// The broker hosted by this process, and in-process access to its store.
#[napi(js_name = "Broker")]
pub struct NativeBroker {
    broker: Mutex<broker::Broker>,
    session: Mutex<Session>,
    /// Its store as this process's data calls name it (see [`NativeBroker::local_id`]).
    local_id: u32,
}

#[napi]
impl NativeBroker {
    #[napi(factory)]
    pub fn start(options: Option<BrokerOptions>) -> napi::Result<NativeBroker> {
        let options = options.unwrap_or(BrokerOptions { socket: None, max_bulk_len: None, auth_secret: None });
        let mut limits = Limits::default();
        if let Some(max) = options.max_bulk_len {
            limits.max_bulk_len = max as usize;
        }
        let broker = broker::Broker::start(broker::BrokerOptions {
            socket: options.socket.map(PathBuf::from),
            limits,
            secret: options.auth_secret,
        })
        .map_err(|e| ShmError::BrokerStart(format!("cannot start the cluster-shm broker: {e}")))?;
        let session = Session::new(broker.db().counters().next_client_id());
        let local = AttachedStore {
            db: Mutex::new(Some(broker.db().clone())),
            session: Mutex::new(Session::new(broker.db().counters().next_client_id())),
        };
        let local_id = register_attached(local);
        Ok(NativeBroker { broker: Mutex::new(broker), session: Mutex::new(session), local_id })
    }

    /// The broker's store as `localStoreGet`, `localStoreSet` and
    /// `localStoreCall` name it: the primary's data calls take the same
    /// path as a worker's, on the store itself rather than through `call`
    /// (a class method, a command array and a reply frame). They say when
    /// the broker must run the command instead, as for a worker.
    #[napi(getter)]
    pub fn local_id(&self) -> u32 {
        self.local_id
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

    /// Runs a command that does not block (KEYS) on the calling thread; its
    /// bulk strings come back as strings.
    #[napi(ts_args_type = "args: Array<string | Buffer>", ts_return_type = "unknown")]
    pub fn call_text(&self, args: Args) -> napi::Result<TextReply> {
        let broker = self.broker.lock();
        if !broker.is_running() {
            return Err(ShmError::Closed.into());
        }
        let db = broker.db().clone();
        drop(broker);
        match broker::execute_local(&db, &mut self.session.lock(), &args.0) {
            LocalReply::Ready(Frame::Error(text)) => Err(ShmError::Server(text).into()),
            LocalReply::Ready(frame) => Ok(TextReply(frame)),
            LocalReply::Blocked(_) => Err(ShmError::BadArgument("callText: a blocking command".into()).into()),
        }
    }

    /// Stops the broker and removes its socket. Idempotent. Throws
    /// ERR_SHM_SNAPSHOT when the final snapshot could not be written.
    #[napi]
    pub fn close(&self) -> napi::Result<()> {
        release_attached(self.local_id);
        self.broker.lock().close().map_err(|e| ShmError::Snapshot(e.to_string()).into())
    }

    /// Loads the snapshot at `path`, if there is one, and writes it there
    /// when the broker closes. Returns how many keys were loaded.
    #[napi]
    pub fn persist(&self, path: String) -> napi::Result<u32> {
        let broker = self.broker.lock();
        let loaded = broker
            .persist_to(PathBuf::from(&path))
            .map_err(|e| ShmError::Snapshot(format!("cannot use the snapshot {path}: {e}")))?;
        Ok(loaded as u32)
    }

    /// Subscriptions served in-process; messages go to `onEvent`.
    #[napi(ts_args_type = "onEvent: (event: PubSubEvent) => void")]
    pub fn subscriber(&self, on_event: Function<'_, PubSubEvent, ()>) -> napi::Result<NativeSubscriber> {
        let db = self.broker.lock().db().clone();
        Ok(NativeSubscriber { inner: Arc::new(subscriber::Subscriber::local(db, emitter(on_event)?)) })
    }
}

/// The shared store mapped into this process (a worker, or any process
/// reaching a broker on this machine): data commands run here, on the
/// calling thread, with no round trip; the rest goes to the broker. The
/// commands themselves go through [`local_store_call`] and
/// [`local_store_get`], which name the store by its `id`.
#[napi(js_name = "LocalStore")]
pub struct NativeLocalStore {
    id: u32,
    slot: u32,
}

/// A store this process attached: its keyspace through the process's slot
/// (None once closed), and the session its commands run in.
// Used by the N-API functions below only: the test build registers none.
#[cfg_attr(test, allow(dead_code))]
struct AttachedStore {
    db: Mutex<Option<Db>>,
    session: Mutex<Session>,
}

/// The stores this process attached, by id. A worker's data calls are plain
/// functions taking that id rather than methods of `LocalStore`: a napi-rs
/// class method's crossing costs about ten times a function's (measured in
/// a worker: 340 ns against 34 ns per call).
static ATTACHED: Mutex<Vec<Option<Arc<AttachedStore>>>> = Mutex::new(Vec::new());

#[cfg_attr(test, allow(dead_code))]
fn attached_store(id: u32) -> Option<Arc<AttachedStore>> {
    ATTACHED.lock().get(id as usize).cloned().flatten()
}

/// Lists a store under the first free id.
fn register_attached(store: AttachedStore) -> u32 {
    let entry = Arc::new(store);
    let mut stores = ATTACHED.lock();
    let id = match stores.iter().position(Option::is_none) {
        Some(free) => {
            stores[free] = Some(entry);
            free
        }
        None => {
            stores.push(Some(entry));
            stores.len() - 1
        }
    };
    id as u32
}

/// Unlists the store `id` and lets its keyspace go (once no call is
/// running on it): calls naming it are sent to the broker from then on.
/// Idempotent.
fn release_attached(id: u32) {
    let entry = ATTACHED.lock().get_mut(id as usize).and_then(Option::take);
    if let Some(entry) = entry {
        entry.db.lock().take();
    }
}

#[napi]
impl NativeLocalStore {
    /// Maps the store of the broker at `options.socket` (its directory
    /// checked first, as for every connection) and takes a slot in it; the
    /// caller names the slot to the broker (`SHM.SLOT`) on its connection.
    /// Throws with the reason when the broker cannot share its store.
    #[napi(factory)]
    pub fn attach(options: ClientOptions) -> napi::Result<NativeLocalStore> {
        let path = crate::trusted_socket::trusted_socket_path(std::path::Path::new(&options.socket))?;
        let timeout = Duration::from_millis(options.connect_timeout.unwrap_or(5_000) as u64);
        let store = crate::shm::attach::attach(&path, options.auth_secret.as_deref(), timeout)
            .map_err(|e| ShmError::Unreachable(format!("cannot map the shared store: {e}")))?;
        let keyspace =
            Keyspace::attach(&store).map_err(|e| ShmError::NoResources(format!("cannot use the shared store: {e}")))?;
        let slot = keyspace.slot();
        let id = register_attached(AttachedStore {
            db: Mutex::new(Some(Db::attached(keyspace))),
            session: Mutex::new(Session::new(0)),
        });
        Ok(NativeLocalStore { id, slot })
    }

    /// What `localStoreCall` and `localStoreGet` take to name this store.
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// This process's slot in the store.
    #[napi(getter)]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Gives the slot back and unmaps the store (once no call is running on
    /// it). Idempotent.
    #[napi]
    pub fn close(&self) {
        release_attached(self.id);
    }
}

/// Runs a data command on the store `id` in this process. Returns undefined
/// when it must go to the broker instead (not a data command, someone
/// listens for changes, the broker is closing, or the store was closed).
///
/// JS: `localStoreCall(id: number, args: Array<string | Buffer>): unknown`
/// (registered by [`register_data_calls`]).
#[cfg_attr(test, allow(dead_code))]
fn local_store_call(id: u32, args: Args) -> napi::Result<Either<Reply, Undefined>> {
    run_attached(id, |ctx| cmd::execute_attached(ctx, &args.0))
}

/// `localStoreCall(id, ['SET', key, value])` without the array: the
/// commonest write. A Buffer value, or its tag and body given as two
/// Buffers, is written into the store from where it lies in JS memory.
///
/// JS: `localStoreSet(id: number, key: string | Buffer, value: string | Buffer | Buffer[]): unknown`
/// (registered by [`register_data_calls`]).
#[cfg_attr(test, allow(dead_code))]
fn local_store_set(id: u32, key: Arg, value: ValueArg) -> napi::Result<Either<Reply, Undefined>> {
    let key = key.0;
    run_attached(id, |ctx| {
        // SAFETY: the value's parts are used only within this call.
        let parts = unsafe { value.parts() };
        match cmd::set_attached(ctx, &key, &parts) {
            cmd::AttachedSet::Done(reply) => Some(reply),
            cmd::AttachedSet::Forward => None,
            cmd::AttachedSet::Bounded => {
                // SAFETY: as above.
                let value = unsafe { value.joined() };
                cmd::execute_attached(ctx, &[Bytes::from_static(b"SET"), key.clone(), value])
            }
        }
    })
}

/// Registers a worker's data calls as plain N-API callbacks (see
/// [`plain_fn`]): `localStoreGet`, `localStoreSet` and `localStoreCall`.
#[cfg_attr(test, allow(dead_code))]
#[napi(module_exports)]
pub fn register_data_calls(exports: Object<'_>, env: Env) -> napi::Result<()> {
    // SAFETY: the module's env and exports, while it registers.
    unsafe {
        plain_fn::export(env.raw(), exports.raw(), "localStoreGet", local_store_get_callback)?;
        plain_fn::export(env.raw(), exports.raw(), "localStoreSet", local_store_set_callback)?;
        plain_fn::export(env.raw(), exports.raw(), "localStoreCall", local_store_call_callback)
    }
}

#[cfg_attr(test, allow(dead_code))]
unsafe extern "C" fn local_store_call_callback(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: N-API's env and info; the arguments are copied out within the call.
    unsafe {
        plain_fn::call(env, info, |env, [id, args]| {
            let id = u32::from_napi_value(env, id)?;
            let args = Args::from_napi_value(env, args)?;
            ToNapiValue::to_napi_value(env, local_store_call(id, args)?)
        })
    }
}

#[cfg_attr(test, allow(dead_code))]
unsafe extern "C" fn local_store_get_callback(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: N-API's env and info; the arguments are used within the call.
    unsafe {
        plain_fn::call(env, info, |env, [id, key, scratch]| {
            let id = u32::from_napi_value(env, id)?;
            let key = Arg::from_napi_value(env, key)?;
            let scratch = js_value::writable_buffer(env, scratch, "localStoreGet: scratch must be a Buffer")?;
            ToNapiValue::to_napi_value(env, local_store_get(Env::from_raw(env), id, key, scratch)?)
        })
    }
}

#[cfg_attr(test, allow(dead_code))]
unsafe extern "C" fn local_store_set_callback(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    // SAFETY: as above.
    unsafe {
        plain_fn::call(env, info, |env, [id, key, value]| {
            let id = u32::from_napi_value(env, id)?;
            let key = Arg::from_napi_value(env, key)?;
            let value = ValueArg::from_napi_value(env, value)?;
            ToNapiValue::to_napi_value(env, local_store_set(id, key, value)?)
        })
    }
}

/// Runs `command` on the store `id` in this process: its reply, or
/// undefined when it must go to the broker (the command gave None, or the
/// store was closed).
#[cfg_attr(test, allow(dead_code))]
fn run_attached(
    id: u32,
    command: impl FnOnce(&mut Ctx<'_>) -> Option<Frame>,
) -> napi::Result<Either<Reply, Undefined>> {
    let Some(entry) = attached_store(id) else {
        return Ok(Either::B(()));
    };
    let attached = entry.db.lock();
    let Some(db) = attached.as_ref() else {
        return Ok(Either::B(()));
    };
    let mut ks = db.lock();
    let mut session = entry.session.lock();
    let mut ctx = Ctx::new(db, &mut ks, &mut session, now_ms());
    match command(&mut ctx) {
        None => Ok(Either::B(())),
        Some(frame) => Ok(Either::A(Reply(frame).into_result()?)),
    }
}

/// Where a long value starts in the Buffer [`local_store_get`] returns it
/// in: 3 bytes in, so that a byte value's bytes, after its 5-byte tag,
/// start at offset 8 of their memory, aligned as Node's own Buffers are (a
/// Float64Array over a Buffer's memory needs an offset that is a multiple
/// of 8).
#[napi]
pub const LONG_VALUE_OFFSET: u32 = 3;

/// Binary values longer than this (their first byte 0xFF, which never
/// starts UTF-8 text: the codec's tagged Buffers and serialized values)
/// come back from [`local_store_get`] in a Buffer of their own, which the
/// caller keeps as the value, rather than copied into its reused buffer and
/// out again. Text there is only decoded. Below 4 KiB Node takes a copy's
/// memory from its pool, which costs less than a Buffer of its own.
const OWN_BINARY_FROM: usize = 4 * 1024;

/// GET on the store `id`: its value's length when it was copied into
/// `scratch` (a Buffer the caller reuses, so no Buffer is made per read);
/// -1 for a missing key; a new Buffer holding the value from
/// [`LONG_VALUE_OFFSET`] on when it is longer than `scratch`, or binary and
/// longer than 4 KiB (see `OWN_BINARY_FROM`); -2 when it must go to the
/// broker (as `localStoreCall` returns undefined).
///
/// JS: `localStoreGet(id: number, key: string | Buffer, scratch: Buffer): number | Buffer`
/// (registered by [`register_data_calls`]).
#[cfg_attr(test, allow(dead_code))]
fn local_store_get(env: Env, id: u32, key: Arg, scratch: &mut [u8]) -> napi::Result<Either<i64, JsRaw>> {
    let Some(entry) = attached_store(id) else {
        return Ok(Either::A(-2));
    };
    let attached = entry.db.lock();
    let Some(db) = attached.as_ref() else {
        return Ok(Either::A(-2));
    };
    let mut ks = db.lock();
    // A value that gets a Buffer of its own is copied out of the mapping
    // straight into it, under the stripe's lock: one copy, and a Buffer the
    // caller may keep (an external Buffer over a native copy costs more, in
    // finalizers and GC pressure, at these sizes). Making it runs no JS
    // (N-API finalizers are deferred) and so cannot re-enter the store; it
    // may collect garbage, which lengthens the lock's hold a little.
    // When it fails, nothing is copied and the error is thrown once the
    // lock is released.
    let mut made: Option<napi::Result<sys::napi_value>> = None;
    let read = cmd::get_attached(&mut ks, &key.0, now_ms(), |len, head| {
        let binary = head == Some(0xff) && len > OWN_BINARY_FROM;
        if len <= scratch.len() && !binary {
            return Some(scratch);
        }
        let offset = LONG_VALUE_OFFSET as usize;
        // SAFETY: the bytes are written here, before this call returns the Buffer.
        let (value, data) = match unsafe { new_buffer(&env, offset + len) } {
            Ok(buffer) => buffer,
            Err(error) => {
                made = Some(Err(error));
                return None;
            }
        };
        made = Some(Ok(value));
        Some(&mut data[offset..])
    });
    drop(ks);
    Ok(match read {
        cmd::AttachedRead::Found(len) => match made {
            Some(value) => Either::B(JsRaw(value?)),
            None => Either::A(len as i64),
        },
        cmd::AttachedRead::Missing => Either::A(-1),
        cmd::AttachedRead::Forward => Either::A(-2),
    })
}

/// A new Buffer of `len` bytes whose contents the caller writes, and those
/// bytes (not zeroed: every one is written before JS sees it).
///
/// # Safety
/// The bytes live as long as the JS value: the caller uses them only
/// within the N-API call that returns the value.
unsafe fn new_buffer<'call>(env: &Env, len: usize) -> napi::Result<(sys::napi_value, &'call mut [u8])> {
    let mut value = std::ptr::null_mut();
    let mut data = std::ptr::null_mut();
    // SAFETY: napi_create_buffer hands back a Buffer of `len` bytes at `data`.
    unsafe {
        napi::check_status!(sys::napi_create_buffer(env.raw(), len, &mut data, &mut value))?;
        let bytes: &mut [u8] = if len == 0 { &mut [] } else { std::slice::from_raw_parts_mut(data.cast(), len) };
        Ok((value, bytes))
    }
}

/// An event for a subscription listener: `kind` is 'message', 'pmessage'
/// or 'missed' (messages may have been lost; `reason` says why).
#[napi(object)]
pub struct PubSubEvent {
    pub kind: String,
    pub channel: Option<Buffer>,
    pub payload: Option<Buffer>,
    pub pattern: Option<Buffer>,
    pub reason: Option<String>,
}

/// Events queued for the JS thread before new ones count as overflow.
const EVENT_QUEUE: usize = 100_000;

type EventFn = ThreadsafeFunction<PubSubEvent, (), PubSubEvent, napi::Status, false, true, EVENT_QUEUE>;

/// Wraps a JS callback so native threads can hand it events. It does not keep
/// the event loop alive: an idle subscriber lets its process exit.
fn emitter(on_event: Function<'_, PubSubEvent, ()>) -> napi::Result<subscriber::Emit> {
    let callback: EventFn = on_event
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .max_queue_size::<EVENT_QUEUE>()
        .build()?;
    Ok(Arc::new(move |event: subscriber::Event| {
        let event = match event {
            subscriber::Event::Message { channel, payload, pattern } => PubSubEvent {
                kind: if pattern.is_some() { "pmessage" } else { "message" }.into(),
                channel: Some(Buffer::from(channel.to_vec())),
                payload: Some(Buffer::from(payload.to_vec())),
                pattern: pattern.map(|p| Buffer::from(p.to_vec())),
                reason: None,
            },
            subscriber::Event::Missed { reason } => PubSubEvent {
                kind: "missed".into(),
                channel: None,
                payload: None,
                pattern: None,
                reason: Some(reason.into()),
            },
        };
        callback.call(event, ThreadsafeFunctionCallMode::NonBlocking) == napi::Status::Ok
    }))
}

/// The subscriptions of this process.
#[napi(js_name = "Subscriber")]
pub struct NativeSubscriber {
    inner: Arc<subscriber::Subscriber>,
}

fn pubsub_kind(kind: &str) -> napi::Result<Kind> {
    match kind {
        "channel" => Ok(Kind::Channel),
        "pattern" => Ok(Kind::Pattern),
        _ => Err(ShmError::BadArgument(format!("unknown subscription kind {kind}")).into()),
    }
}

#[napi]
impl NativeSubscriber {
    /// Resolves once the subscription is active in the broker.
    #[napi(ts_args_type = "kind: 'channel' | 'pattern', name: [string | Buffer]", ts_return_type = "Promise<void>")]
    pub fn subscribe<'env>(&self, env: &'env Env, kind: String, name: Args) -> napi::Result<PromiseRaw<'env, ()>> {
        let (kind, name, inner) = (pubsub_kind(&kind)?, one_arg(name)?, self.inner.clone());
        env.spawn_future(async move {
            inner.subscribe(kind, name);
            Ok(())
        })
    }

    #[napi(ts_args_type = "kind: 'channel' | 'pattern', name: [string | Buffer]", ts_return_type = "Promise<void>")]
    pub fn unsubscribe<'env>(&self, env: &'env Env, kind: String, name: Args) -> napi::Result<PromiseRaw<'env, ()>> {
        let (kind, name, inner) = (pubsub_kind(&kind)?, one_arg(name)?, self.inner.clone());
        env.spawn_future(async move {
            inner.unsubscribe(kind, name);
            Ok(())
        })
    }

    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

fn one_arg(args: Args) -> napi::Result<bytes::Bytes> {
    let mut args = args.0;
    match args.len() {
        1 => Ok(args.remove(0)),
        _ => Err(ShmError::BadArgument("expected exactly one name".into()).into()),
    }
}

/// The path to connect to for the broker socket at `socket`, once its
/// directory is found out of other users' reach (src/trusted_socket.rs):
/// the JS connections check each connection here, as the native ones do.
/// Throws ERR_SHM_UNSAFE_SOCKET, or ERR_SHM_UNREACHABLE with the reason
/// when the directory cannot be resolved (yet).
// Only JS calls it: the test build registers no N-API functions.
#[cfg_attr(test, allow(dead_code))]
#[napi]
pub fn trusted_socket_path(socket: String) -> napi::Result<String> {
    let path = crate::trusted_socket::trusted_socket_path(std::path::Path::new(&socket))?;
    Ok(path.display().to_string())
}

#[napi(object)]
pub struct ClientOptions {
    pub socket: String,
    /// Milliseconds a call waits for a connection before failing.
    pub connect_timeout: Option<u32>,
    /// Milliseconds a call waits for its reply.
    pub command_timeout: Option<u32>,
    /// The broker's secret.
    pub auth_secret: Option<String>,
}

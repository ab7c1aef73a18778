//! Commands: the table every command is registered in, argument helpers, and
//! the dispatch shared by socket connections and the primary's in-process
//! calls. One module per command family.

mod connection;
mod keys;
mod locks;
mod pubsub;
mod ratelimit;
mod server;
mod store;
mod strings;
mod transactions;

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::LazyLock;

use bytes::Bytes;

use crate::resp::{parse_i64, Frame};
use crate::store::{Db, Keyspace, Mailbox, MAX_PATTERN_LEN};
use std::sync::Arc;

pub use locks::Blocked;

/// The Redis version whose semantics the broker follows. Clients and test
/// suites gate features on it, so it names Redis, not this package.
pub const REDIS_VERSION: &str = "7.0.15";
/// This package's own version, reported beside it.
pub const BROKER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Per-connection state (one for each socket client, one for the primary's
/// in-process caller).
#[derive(Debug, Default)]
pub struct Session {
    pub id: u64,
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    /// Set by QUIT: the connection closes once this reply is written.
    pub closing: bool,
    /// False until AUTH succeeds, when the broker has a secret.
    pub authenticated: bool,
    /// Commands queued since MULTI.
    pub multi: Option<Vec<Vec<Bytes>>>,
    /// A command was refused while queueing: EXEC will abort.
    pub multi_failed: bool,
    /// Keys under WATCH with the version each had then.
    pub watched: Vec<(Bytes, Option<u64>)>,
    /// SHM.ATTACH asked for the store's descriptor: the connection sends it
    /// with the reply (SCM_RIGHTS).
    pub send_store_fd: bool,
    /// Slots of the shared store the process at the other end took
    /// (SHM.SLOT): repaired if the connection ends with the process.
    pub store_slots: Vec<u32>,
    /// SHM.PUSHES ON: pub/sub messages come as pushes, and subscribing
    /// leaves every command available.
    pub pushes: bool,
}

impl Session {
    /// A session that needs no AUTH (in-process callers, tests).
    pub fn new(id: u64) -> Session {
        Session { id, authenticated: true, ..Session::default() }
    }

    /// A socket client's session: authenticated only if there is no secret.
    pub fn for_client(id: u64, db: &Db) -> Session {
        Session { id, authenticated: db.config().requirepass.is_none(), ..Session::default() }
    }
}

/// What a command runs against.
pub struct Ctx<'a> {
    pub db: &'a Db,
    pub ks: &'a mut Keyspace,
    pub session: &'a mut Session,
    /// Unix ms, read once per batch of commands.
    pub now: u64,
    /// Set by a blocking command whose reply must be awaited.
    pub blocked: Option<Blocked>,
    /// True while EXEC runs the queued commands.
    pub in_transaction: bool,
    /// Where this connection's pub/sub messages go (None in-process).
    pub mailbox: Option<Arc<dyn Mailbox>>,
}

impl<'a> Ctx<'a> {
    pub fn new(db: &'a Db, ks: &'a mut Keyspace, session: &'a mut Session, now: u64) -> Ctx<'a> {
        Ctx { db, ks, session, now, blocked: None, in_transaction: false, mailbox: None }
    }
}

type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Frame;

/// A registered command, with the metadata COMMAND and COMMAND DOCS report.
pub struct CommandSpec {
    /// Lower case, as Redis reports it.
    pub name: &'static str,
    /// Redis's convention: positive is exact, negative is a minimum; both
    /// count the command name.
    pub arity: i32,
    pub flags: &'static [&'static str],
    /// First key, last key, step (0, 0, 0 for no keys).
    pub keys: (i32, i32, i32),
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub run: Handler,
}

/// Every command the broker implements, one slice per family.
pub fn all_commands() -> impl Iterator<Item = &'static CommandSpec> {
    [
        connection::COMMANDS,
        strings::COMMANDS,
        keys::COMMANDS,
        transactions::COMMANDS,
        locks::COMMANDS,
        pubsub::COMMANDS,
        ratelimit::COMMANDS,
        server::COMMANDS,
        store::COMMANDS,
    ]
    .into_iter()
    .flatten()
}

/// Hashed with aHash: looked up once per command, and its keys are fixed
/// (no client can grow it, so SipHash's flood resistance buys nothing).
static TABLE: LazyLock<ahash::AHashMap<&'static str, &'static CommandSpec>> =
    LazyLock::new(|| all_commands().map(|c| (c.name, c)).collect());

/// The spec `lookup` found last: clients send runs of one command (SET
/// after SET), which then cost a comparison instead of a hash. Only
/// pointers to the table's static specs are stored.
static LAST_FOUND: AtomicPtr<CommandSpec> = AtomicPtr::new(std::ptr::null_mut());

pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let last = LAST_FOUND.load(Ordering::Relaxed);
    if !last.is_null() {
        // SAFETY: LAST_FOUND only ever holds a pointer to a static spec.
        let spec: &'static CommandSpec = unsafe { &*last };
        if spec.name.as_bytes().eq_ignore_ascii_case(name) {
            return Some(spec);
        }
    }
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let spec: &'static CommandSpec = TABLE.get(std::str::from_utf8(lower).ok()?).copied()?;
    LAST_FOUND.store(spec as *const CommandSpec as *mut CommandSpec, Ordering::Relaxed);
    Some(spec)
}

/// Runs one command and returns its reply. Never panics on client input.
pub fn execute(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(name) = args.first() else {
        return Frame::error("ERR empty command");
    };
    let checked = match lookup(name) {
        None => Err(unknown_command(args)),
        Some(spec) => {
            let argc = args.len() as i32;
            if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
                Err(wrong_arity(spec.name))
            } else {
                Ok(spec)
            }
        }
    };
    if !ctx.session.authenticated && !spec_allows_no_auth(&checked) {
        return Frame::error("NOAUTH Authentication required.");
    }
    let queueing = ctx.session.multi.is_some() && !ctx.in_transaction;
    let spec = match checked {
        Ok(spec) => spec,
        Err(error) => {
            if queueing {
                ctx.session.multi_failed = true;
            }
            return error;
        }
    };
    if !ctx.session.pushes
        && ctx.ks.pubsub.is_subscribed(ctx.session.id)
        && !pubsub::allowed_while_subscribed(spec.name)
    {
        return Frame::error(format!(
            "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
            spec.name
        ));
    }
    if queueing && !transactions::controls_transaction(spec.name) {
        ctx.session.multi.as_mut().expect("queueing").push(args.to_vec());
        return Frame::Simple("QUEUED".into());
    }
    if ctx.ks.tracking.is_active() {
        return run_tracked(ctx, spec, args);
    }
    run(ctx, spec, args)
}

/// Runs a command as one operation on the shared store: the stripes of
/// the keys it names are locked first, and its changes are applied whole or
/// rolled back (a command queued in EXEC runs inside EXEC's operation).
fn run(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Frame {
    // Room is made first, each eviction an operation of its own, before the
    // command locks its stripes.
    if spec.flags.contains(&"denyoom") {
        if let Err(refused) = make_room(ctx, spec, args) {
            ctx.ks.release_admission();
            return refused;
        }
    }
    let own = ctx.ks.begin_command(command_keys(spec, args), spec.name == "exec");
    let reply = run_locked(ctx, spec, args);
    if own {
        let ended = ctx.ks.end_command();
        ctx.ks.release_admission();
        if let Err(e) = ended {
            return Frame::error(e.to_string());
        }
    }
    reply
}

fn run_locked(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Frame {
    if spec.name == "exec" {
        ctx.in_transaction = true;
        let reply = (spec.run)(ctx, args);
        ctx.in_transaction = false;
        return reply;
    }
    (spec.run)(ctx, args)
}

/// Runs a command while some client tracks keys (CLIENT TRACKING): the
/// changes it makes are attributed to its client (for NOLOOP), and the keys
/// a read-only command names are remembered for its client, if it tracks.
fn run_tracked(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Frame {
    // Restored after, as EXEC runs its commands through here too.
    let outer = ctx.ks.tracking.set_current(ctx.session.id);
    let reply = run(ctx, spec, args);
    ctx.ks.tracking.set_current(outer);
    if spec.keys.0 > 0 && spec.flags.contains(&"readonly") {
        let ks = &mut *ctx.ks;
        ks.tracking.remember(ctx.session.id, command_keys(spec, args), &mut ks.pubsub);
    }
    reply
}

/// Whether a process attached to the shared store runs this command itself:
/// a data command on the keys it names. Everything else (pub/sub, locks,
/// transactions, server commands, whole-keyspace commands) goes to the broker.
pub fn runs_attached(spec: &CommandSpec) -> bool {
    spec.keys.0 > 0
        && (matches!(spec.group, "string" | "generic") || matches!(spec.name, "shm.incrby" | "shm.ratelimit"))
}

/// Runs a data command in a process attached to the shared store (not the
/// broker). None when it must go to the broker instead: the command is not
/// one an attached process runs, the broker must see the change (a
/// subscriber wants keyspace events, or a client tracks keys), or the
/// broker is closing or gone. That is
/// checked with the command's stripes locked, so no change made here can
/// miss a listener the broker has confirmed.
pub fn execute_attached(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Option<Frame> {
    let spec = lookup(args.first()?)?;
    let argc = args.len() as i32;
    let now = ctx.now;
    if !runs_attached(spec) || (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity || ctx.ks.must_forward(now)
    {
        return None;
    }
    if spec.flags.contains(&"denyoom") {
        if let Err(refused) = make_room(ctx, spec, args) {
            ctx.ks.release_admission();
            return (!ctx.ks.must_forward(now)).then_some(refused);
        }
    }
    if !begin_attached(ctx.ks, command_keys(spec, args), now) {
        ctx.ks.release_admission();
        return None;
    }
    let reply = (spec.run)(ctx, args);
    let ended = ctx.ks.end_command();
    ctx.ks.release_admission();
    Some(match ended {
        Ok(()) => reply,
        Err(e) => Frame::error(e.to_string()),
    })
}

/// Starts an attached process's command with the stripes of `keys` locked;
/// rolls it back and returns false when the broker must run it instead
/// (checked under those locks: see [`execute_attached`]).
fn begin_attached<'k>(ks: &mut Keyspace, keys: impl Iterator<Item = &'k Bytes>, now: u64) -> bool {
    ks.begin_command(keys, false);
    if ks.must_forward(now) {
        ks.abandon_command();
        return false;
    }
    true
}

/// What [`get_attached`] found.
pub enum AttachedRead {
    /// The value's length: copied into the buffer `place` picked.
    Found(usize),
    Missing,
    /// It must be read through the broker (see [`execute_attached`]).
    Forward,
}

/// GET in a process attached to the shared store, copying the value into
/// the buffer `place(len, first_byte)` picks (the caller's reusable buffer,
/// or a JS Buffer of its own) rather than building a reply: the fast path
/// of a worker's `get`, one copy out of the mapping. Same checks as
/// [`execute_attached`].
pub fn get_attached<'b>(
    ks: &mut Keyspace,
    key: &Bytes,
    now: u64,
    place: impl FnOnce(usize, Option<u8>) -> Option<&'b mut [u8]>,
) -> AttachedRead {
    if ks.must_forward(now) {
        return AttachedRead::Forward;
    }
    if !begin_attached(ks, std::iter::once(key), now) {
        return AttachedRead::Forward;
    }
    let read = ks.read_into(key, now, place);
    match (ks.end_command(), read) {
        (Err(_), _) => AttachedRead::Forward,
        (Ok(()), None) => AttachedRead::Missing,
        (Ok(()), Some(len)) => AttachedRead::Found(len),
    }
}

/// What [`set_attached`] did.
#[derive(Debug, PartialEq)]
pub enum AttachedSet {
    /// Ran, with this reply: the one [`execute_attached`] gives the same
    /// command.
    Done(Frame),
    /// Under a memory bound: the general path must run it (it estimates
    /// and admits the write first), with the value in one piece.
    Bounded,
    /// It must go to the broker (see [`execute_attached`]).
    Forward,
}

/// `SET key value` in a process attached to the shared store, with the
/// value in parts written one after the other: a worker's `set()` of a
/// Buffer hands over its tag and its bytes as they lie in JS memory, with no
/// joined copy first.
pub fn set_attached(ctx: &mut Ctx<'_>, key: &Bytes, value: &[&[u8]]) -> AttachedSet {
    if ctx.ks.must_forward(ctx.now) {
        return AttachedSet::Forward;
    }
    let limits = ctx.ks.limits();
    if limits.max_memory != 0 || limits.max_keys != 0 {
        return AttachedSet::Bounded;
    }
    if !begin_attached(ctx.ks, std::iter::once(key), ctx.now) {
        return AttachedSet::Forward;
    }
    ctx.ks.set_parts(key, value, crate::store::Expiry::Clear, ctx.now);
    ctx.ks.notify(crate::store::notify::STRING, "set", key);
    AttachedSet::Done(match ctx.ks.end_command() {
        Ok(()) => Frame::ok(),
        Err(e) => Frame::error(e.to_string()),
    })
}

/// The keys a command names, by its spec's (first, last, step).
fn command_keys<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> {
    let (first, last, step) = spec.keys;
    let last = if last < 0 { args.len() as i32 + last } else { last };
    let (first, count) =
        if first > 0 && last >= first { (first as usize, (last - first) as usize + 1) } else { (0, 0) };
    args.iter().skip(first).take(count).step_by(step.max(1) as usize)
}

fn spec_allows_no_auth(checked: &Result<&'static CommandSpec, Frame>) -> bool {
    matches!(checked, Ok(spec) if spec.flags.contains(&"no_auth"))
}

/// Under a memory bound, evicts (or refuses with OOM) before a write that
/// may need room: about the size of its arguments, and a slot for each key
/// it would create.
fn make_room(ctx: &mut Ctx<'_>, spec: &CommandSpec, args: &[Bytes]) -> Result<(), Frame> {
    let limits = ctx.ks.limits();
    if limits.max_memory == 0 && limits.max_keys == 0 {
        return Ok(());
    }
    let mut new_keys = Vec::new();
    for key in command_keys(spec, args) {
        if !ctx.ks.contains(key, ctx.now) {
            new_keys.push(key.clone());
        }
    }
    // Most writes add about their arguments; these two can add much more.
    let growth = match spec.name {
        "setrange" => strings::setrange_growth(ctx, args),
        "copy" => keys::copy_growth(ctx, args),
        _ => None,
    };
    let bytes = growth.unwrap_or_else(|| args[1..].iter().map(|a| a.len()).sum::<usize>());
    // What the entries will take in their size classes: a 32-byte header
    // each, rounded up (by at most 512 bytes per entry past the first).
    let entries = new_keys.len().max(1);
    let entries_size = crate::shm::layout::rounded((bytes + crate::store::ENTRY_HEADER * entries) as u64) as usize
        + (entries - 1) * 512;
    // Plus the growth of the new keys' stripe indexes, which evictions may
    // change (an emptied stripe gives its table back): asked again after.
    let incoming =
        |ks: &crate::store::Keyspace| entries_size + new_keys.iter().map(|k| ks.index_growth(k)).sum::<usize>();
    // Released by the caller once the command's operation ends.
    ctx.ks.admit(incoming(ctx.ks), new_keys.len());
    let mut wanted = incoming(ctx.ks);
    for _ in 0..4 {
        if ctx.ks.make_room(wanted, new_keys.len(), ctx.now).is_err() {
            return Err(if limits.max_memory > 0 && ctx.ks.used_memory() + wanted > limits.max_memory {
                Frame::error("OOM command not allowed when used memory > 'maxmemory'.")
            } else {
                Frame::error("OOM command not allowed when the number of keys >= 'maxkeys'.")
            });
        }
        let now_wanted = incoming(ctx.ks);
        if now_wanted <= wanted {
            break;
        }
        wanted = now_wanted;
    }
    Ok(())
}

/// `ERR unknown command 'x', with args beginning with: 'a' 'b' `, as Redis 7.
fn unknown_command(args: &[Bytes]) -> Frame {
    let mut listed = String::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        let text = String::from_utf8_lossy(arg);
        listed.push('\'');
        listed.extend(text.chars().take(room));
        listed.push_str("' ");
    }
    let name: String = String::from_utf8_lossy(&args[0]).chars().take(128).collect();
    Frame::error(format!("ERR unknown command '{name}', with args beginning with: {listed}"))
}

pub fn wrong_arity(name: &str) -> Frame {
    Frame::error(format!("ERR wrong number of arguments for '{name}' command"))
}

pub fn syntax_error() -> Frame {
    Frame::error("ERR syntax error")
}

pub fn not_an_integer() -> Frame {
    Frame::error("ERR value is not an integer or out of range")
}

pub fn unknown_subcommand(sub: &[u8], command: &str) -> Frame {
    Frame::error(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        command.to_ascii_uppercase()
    ))
}

/// An integer argument, or Redis's not-an-integer error.
pub fn int_arg(arg: &[u8]) -> Result<i64, Frame> {
    parse_i64(arg).ok_or_else(not_an_integer)
}

/// A glob pattern argument, or an error when it is longer than matching it
/// against every key may cost (see `store::MAX_PATTERN_LEN`).
pub fn pattern_arg(pattern: &Bytes) -> Result<&Bytes, Frame> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Frame::error(format!("ERR pattern is longer than {MAX_PATTERN_LEN} bytes")));
    }
    Ok(pattern)
}

/// A database index (SELECT, COPY ... DB): the broker has one database, 0,
/// so any other index gets Redis's error for an index past `databases`.
pub fn db_index_arg(arg: &[u8]) -> Result<(), Frame> {
    let index = int_arg(arg)?;
    if i32::try_from(index).is_err() {
        return Err(Frame::error("ERR value is out of range, value must between -2147483648 and 2147483647"));
    }
    if index != 0 {
        return Err(Frame::error("ERR DB index is out of range"));
    }
    Ok(())
}

/// Case-insensitive comparison of an argument with an option name.
pub fn is(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

/// Unwraps a `Result` whose error is already the reply to send.
macro_rules! try_reply {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(reply) => return reply,
        }
    };
}
pub(crate) use try_reply;

#[cfg(test)]
mod tests;

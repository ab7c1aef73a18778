//! Lock commands (this broker's own, in the `SHM.` namespace):
//!
//! - `SHM.LOCK name token ttl-ms [WAIT timeout-ms [ASYNC]]`: the fencing
//!   token (integer) once held, nil if not acquired. With WAIT the
//!   connection blocks, first come first served, until the lock is handed
//!   over or the timeout passes; without it the call never waits.
//!   With WAIT … ASYNC the connection does not block: a lock that is busy
//!   replies `+QUEUED` at once, and the outcome of the wait comes later as
//!   a RESP3 push, `>4 shm.lock name token fence` (nil fence: timed out),
//!   so one connection can wait for any number of locks while it goes on
//!   serving other commands. In-process (no connection to push to) ASYNC
//!   waits as WAIT does.
//! - `SHM.UNLOCK name token`: 1 if `token` held the lock (it passes to the
//!   next waiter), else 0. A wait queued with `token` is withdrawn too, so a
//!   client that gave up on a wait can take it back whatever became of it.
//! - `SHM.EXTEND name token ttl-ms`: 1 if `token` holds the lock, else 0.
//!
//! A lock belongs to the connection that took it: when that connection
//! closes, its locks are handed over at once.

use std::time::Duration;

use bytes::Bytes;

use super::{int_arg, is, syntax_error, try_reply, CommandSpec, Ctx};
use crate::resp::{encode_push, Frame};
use crate::store::{Acquire, Db, Grant};

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "shm.lock", arity: -4, flags: &["write", "blocking"], keys: (0, 0, 0), group: "cluster-shm", since: "0.1.0", summary: "Acquires a named lock, optionally waiting in line for it.", run: lock },
    CommandSpec { name: "shm.unlock", arity: 3, flags: &["write", "fast"], keys: (0, 0, 0), group: "cluster-shm", since: "0.1.0", summary: "Releases a named lock held with a token.", run: unlock },
    CommandSpec { name: "shm.extend", arity: 4, flags: &["write", "fast"], keys: (0, 0, 0), group: "cluster-shm", since: "0.1.0", summary: "Extends the ttl of a named lock held with a token.", run: extend },
];

/// A reply that comes later: the connection that sent the command waits for
/// it (as a Redis client blocked in BLPOP does) without holding the store.
pub struct Blocked {
    name: Bytes,
    waiter: u64,
    grant: Grant,
    timeout: Duration,
}

impl Blocked {
    /// Waits for the hand-over or the timeout, and gives the reply. If the
    /// caller goes away first, the future is dropped and the end of its
    /// connection withdraws the wait (or passes the lock on).
    pub async fn reply(self, db: &Db) -> Frame {
        let Blocked { name, waiter, mut grant, timeout } = self;
        match tokio::time::timeout(timeout, &mut grant).await {
            Ok(Ok(fence)) => Frame::Integer(fence as i64),
            Ok(Err(_)) => Frame::Null,
            Err(_) => {
                // Withdraw; if the lock was handed over meanwhile, it is ours.
                let withdrawn = db.lock().locks.cancel(&name, waiter);
                match grant.try_recv() {
                    Ok(fence) if !withdrawn => Frame::Integer(fence as i64),
                    _ => Frame::Null,
                }
            }
        }
    }
}

fn positive_ms(arg: &[u8]) -> Result<u64, Frame> {
    match int_arg(arg)? {
        n if n > 0 => Ok(n as u64),
        _ => Err(Frame::error("ERR invalid expire time in 'shm.lock' command")),
    }
}

fn wait_ms(arg: &[u8]) -> Result<u64, Frame> {
    match int_arg(arg)? {
        ms if ms >= 0 => Ok(ms as u64),
        _ => Err(Frame::error("ERR timeout is negative")),
    }
}

fn lock(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (name, token) = (&args[1], &args[2]);
    let ttl = try_reply!(positive_ms(&args[3]));
    let (wait, pushed) = match &args[4..] {
        [] => (0, false),
        [option, timeout] if is(option, "WAIT") => (try_reply!(wait_ms(timeout)), false),
        [option, timeout, mode] if is(option, "WAIT") && is(mode, "ASYNC") => (try_reply!(wait_ms(timeout)), true),
        _ => return syntax_error(),
    };
    let client = ctx.session.id;
    match ctx.ks.locks.try_acquire(name, client, token, ttl, ctx.now) {
        Acquire::Granted(fence) => Frame::Integer(fence as i64),
        // Inside MULTI a blocking command never blocks, as in Redis.
        Acquire::Busy if wait == 0 || ctx.in_transaction => Frame::Null,
        Acquire::Busy => {
            let (waiter, grant) = ctx.ks.locks.enqueue(name, client, token, ttl);
            let blocked = Blocked { name: name.clone(), waiter, grant, timeout: Duration::from_millis(wait) };
            match (pushed, &ctx.mailbox, tokio::runtime::Handle::try_current()) {
                (true, Some(mailbox), Ok(runtime)) => {
                    let (db, mailbox, token) = (ctx.db.clone(), mailbox.clone(), token.clone());
                    runtime.spawn(async move {
                        let name = blocked.name.clone();
                        let outcome = blocked.reply(&db).await;
                        // The outcome was decided under the store's lock, and
                        // a batch queues its replies before it lets go of it:
                        // taking the lock once more keeps the push behind the
                        // replies of the batch that decided it (+QUEUED, or an
                        // SHM.UNLOCK that withdrew this wait).
                        drop(db.lock());
                        mailbox.push(lock_push(name, token, outcome));
                    });
                    Frame::Simple("QUEUED".into())
                }
                _ => {
                    ctx.blocked = Some(blocked);
                    Frame::Null
                }
            }
        }
    }
}

/// The push that tells an ASYNC waiter how its wait ended.
fn lock_push(name: Bytes, token: Bytes, outcome: Frame) -> Bytes {
    encode_push(&[Frame::bulk_str("shm.lock"), Frame::Bulk(name), Frame::Bulk(token), outcome])
}

fn unlock(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    Frame::Integer(ctx.ks.locks.release(&args[1], &args[2], ctx.now) as i64)
}

fn extend(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let ttl = try_reply!(positive_ms(&args[3]));
    Frame::Integer(ctx.ks.locks.extend(&args[1], &args[2], ttl, ctx.now) as i64)
}

//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, with Redis semantics.
//! Queueing itself happens in [`super::execute`].

use bytes::Bytes;

use super::{execute, CommandSpec, Ctx};
use crate::resp::Frame;

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "multi", arity: 1, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], keys: (0, 0, 0), group: "transactions", since: "1.2.0", summary: "Starts a transaction.", run: multi },
    CommandSpec { name: "exec", arity: 1, flags: &["noscript", "loading", "stale", "skip_slowlog"], keys: (0, 0, 0), group: "transactions", since: "1.2.0", summary: "Executes all commands in a transaction.", run: exec },
    CommandSpec { name: "discard", arity: 1, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], keys: (0, 0, 0), group: "transactions", since: "2.0.0", summary: "Discards a transaction.", run: discard },
    CommandSpec { name: "watch", arity: -2, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], keys: (1, -1, 1), group: "transactions", since: "2.2.0", summary: "Monitors changes to keys to determine the execution of a transaction.", run: watch },
    CommandSpec { name: "unwatch", arity: 1, flags: &["noscript", "loading", "stale", "fast", "allow_busy"], keys: (0, 0, 0), group: "transactions", since: "2.2.0", summary: "Forgets about watched keys of a transaction.", run: unwatch },
];

/// Commands that act on the transaction itself instead of being queued.
pub fn controls_transaction(name: &str) -> bool {
    matches!(name, "multi" | "exec" | "discard" | "watch" | "quit" | "reset")
}

fn multi(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    if ctx.session.multi.is_some() {
        return Frame::error("ERR MULTI calls can not be nested");
    }
    ctx.session.multi = Some(Vec::new());
    ctx.session.multi_failed = false;
    Frame::ok()
}

fn exec(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let Some(queued) = ctx.session.multi.take() else {
        return Frame::error("ERR EXEC without MULTI");
    };
    let watched = std::mem::take(&mut ctx.session.watched);
    if std::mem::take(&mut ctx.session.multi_failed) {
        return Frame::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let now = ctx.now;
    if watched.iter().any(|(key, version)| ctx.ks.version(key, now) != *version) {
        return Frame::NullArray;
    }
    // The whole transaction runs under the store lock the caller holds.
    Frame::Array(queued.iter().map(|args| execute(ctx, args)).collect())
}

fn discard(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    if ctx.session.multi.take().is_none() {
        return Frame::error("ERR DISCARD without MULTI");
    }
    ctx.session.watched.clear();
    ctx.session.multi_failed = false;
    Frame::ok()
}

fn watch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if ctx.session.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed");
    }
    for key in &args[1..] {
        let version = ctx.ks.version(key, ctx.now);
        ctx.session.watched.push((key.clone(), version));
    }
    Frame::ok()
}

fn unwatch(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.session.watched.clear();
    Frame::ok()
}

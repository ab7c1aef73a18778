//! Pub/sub commands: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
//! PUBLISH, PUBSUB CHANNELS/NUMSUB/NUMPAT, with Redis's RESP2 replies; and
//! SHM.PUSHES, with which one connection both subscribes and runs commands.
//!
//! A connection in RESP2's subscribed mode can run nothing but (un)subscribe
//! and PING. After `SHM.PUSHES ON` its messages come as pushes instead
//! (`>3 message <channel> <payload>`, `>4 pmessage <pattern> <channel>
//! <payload>`, as Redis sends them over RESP3), in order with its replies,
//! and it keeps running every command: a worker's one connection to the
//! broker carries its calls, its lock waits and its subscriptions.
//! (UN)SUBSCRIBE still reply with one confirmation per name.

use bytes::Bytes;

use super::{is, pattern_arg, syntax_error, try_reply, unknown_subcommand, CommandSpec, Ctx};
use crate::resp::Frame;
use crate::store::Kind;

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "subscribe", arity: -2, flags: &["pubsub", "noscript", "loading", "stale"], keys: (0, 0, 0), group: "pubsub", since: "2.0.0", summary: "Listens for messages published to channels.", run: subscribe },
    CommandSpec { name: "unsubscribe", arity: -1, flags: &["pubsub", "noscript", "loading", "stale"], keys: (0, 0, 0), group: "pubsub", since: "2.0.0", summary: "Stops listening to messages posted to channels.", run: unsubscribe },
    CommandSpec { name: "psubscribe", arity: -2, flags: &["pubsub", "noscript", "loading", "stale"], keys: (0, 0, 0), group: "pubsub", since: "2.0.0", summary: "Listens for messages published to channels that match patterns.", run: subscribe },
    CommandSpec { name: "punsubscribe", arity: -1, flags: &["pubsub", "noscript", "loading", "stale"], keys: (0, 0, 0), group: "pubsub", since: "2.0.0", summary: "Stops listening to messages published to channels that match patterns.", run: unsubscribe },
    CommandSpec { name: "publish", arity: 3, flags: &["pubsub", "loading", "stale", "fast"], keys: (0, 0, 0), group: "pubsub", since: "2.0.0", summary: "Posts a message to a channel.", run: publish },
    CommandSpec { name: "shm.pushes", arity: 2, flags: &["noscript", "loading", "stale", "fast"], keys: (0, 0, 0), group: "cluster-shm", since: "0.2.0", summary: "ON: this connection's pub/sub messages come as pushes, and subscribing leaves every command available. OFF: RESP2's subscribed mode.", run: pushes },
    CommandSpec { name: "pubsub", arity: -2, flags: &["pubsub", "loading", "stale"], keys: (0, 0, 0), group: "pubsub", since: "2.8.0", summary: "Inspects pub/sub state: CHANNELS, NUMSUB, NUMPAT.", run: pubsub },
];

/// What a connection in subscribed mode may still send (RESP2).
pub fn allowed_while_subscribed(name: &str) -> bool {
    matches!(name, "subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "ping" | "quit" | "reset")
}

fn kind_of(command: &[u8]) -> (Kind, &'static str) {
    if command[0].eq_ignore_ascii_case(&b'p') {
        (Kind::Pattern, "p")
    } else {
        (Kind::Channel, "")
    }
}

fn confirmation(verb: String, name: Option<Bytes>, count: usize) -> Frame {
    Frame::Array(vec![Frame::bulk(verb), name.map_or(Frame::Null, Frame::Bulk), Frame::Integer(count as i64)])
}

fn subscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (kind, prefix) = kind_of(&args[0]);
    let Some(mailbox) = ctx.mailbox.clone() else {
        return Frame::error("ERR SUBSCRIBE is only available on a socket connection");
    };
    if ctx.in_transaction {
        return Frame::error(format!("ERR Command not allowed inside a transaction: {prefix}subscribe"));
    }
    if kind == Kind::Pattern {
        // Every publish matches the channel against every pattern.
        for pattern in &args[1..] {
            try_reply!(pattern_arg(pattern));
        }
    }
    let client = ctx.session.id;
    let replies = args[1..]
        .iter()
        .map(|name| {
            let count = ctx.ks.pubsub.subscribe(client, &mailbox, kind, name);
            confirmation(format!("{prefix}subscribe"), Some(name.clone()), count)
        })
        .collect();
    Frame::Many(replies)
}

fn unsubscribe(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (kind, prefix) = kind_of(&args[0]);
    let client = ctx.session.id;
    let names = if args.len() > 1 { args[1..].to_vec() } else { ctx.ks.pubsub.subscriptions(client, kind) };
    if names.is_empty() {
        return Frame::Many(vec![confirmation(format!("{prefix}unsubscribe"), None, ctx.ks.pubsub.count(client))]);
    }
    let replies = names
        .into_iter()
        .map(|name| {
            let count = ctx.ks.pubsub.unsubscribe(client, kind, &name);
            confirmation(format!("{prefix}unsubscribe"), Some(name), count)
        })
        .collect();
    Frame::Many(replies)
}

fn pushes(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let on = if is(&args[1], "ON") {
        true
    } else if is(&args[1], "OFF") {
        false
    } else {
        return syntax_error();
    };
    if on == ctx.session.pushes {
        return Frame::ok();
    }
    // The messages already queued were framed the other way.
    if ctx.ks.pubsub.is_subscribed(ctx.session.id) {
        return Frame::error("ERR SHM.PUSHES cannot change while this connection is subscribed: unsubscribe first");
    }
    if !ctx.mailbox.as_ref().is_some_and(|mailbox| mailbox.frame_as_pushes(on)) {
        return Frame::error("ERR SHM.PUSHES is only available on a socket connection");
    }
    ctx.session.pushes = on;
    Frame::ok()
}

fn publish(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    Frame::Integer(ctx.ks.pubsub.publish(&args[1], &args[2]) as i64)
}

fn pubsub(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    if is(sub, "CHANNELS") && args.len() <= 3 {
        let pattern = match args.get(2) {
            Some(pattern) => Some(try_reply!(pattern_arg(pattern)).as_ref()),
            None => None,
        };
        Frame::Array(ctx.ks.pubsub.active_channels(pattern).into_iter().map(Frame::Bulk).collect())
    } else if is(sub, "NUMSUB") {
        let mut reply = Vec::new();
        for channel in &args[2..] {
            reply.push(Frame::Bulk(channel.clone()));
            reply.push(Frame::Integer(ctx.ks.pubsub.subscriber_count(channel) as i64));
        }
        Frame::Array(reply)
    } else if is(sub, "NUMPAT") && args.len() == 2 {
        Frame::Integer(ctx.ks.pubsub.pattern_count() as i64)
    } else {
        unknown_subcommand(sub, "pubsub")
    }
}

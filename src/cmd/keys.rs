//! Keyspace commands: DEL, UNLINK, EXISTS, TOUCH, KEYS, SCAN, RANDOMKEY,
//! DBSIZE, FLUSHDB, TYPE, RENAME, RENAMENX, COPY, OBJECT and the expiry
//! family (EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, TTL, PTTL, PERSIST,
//! EXPIRETIME, PEXPIRETIME).

use bytes::Bytes;

use super::{db_index_arg, int_arg, is, pattern_arg, syntax_error, try_reply, unknown_subcommand, CommandSpec, Ctx};
use crate::resp::Frame;
use crate::store::{notify, Expiry, Glob, VALUE_TYPE};

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "del", arity: -2, flags: &["write"], keys: (1, -1, 1), group: "generic", since: "1.0.0", summary: "Deletes one or more keys.", run: del },
    CommandSpec { name: "delex", arity: -2, flags: &["write", "fast"], keys: (1, 1, 1), group: "generic", since: "8.4.0", summary: "Deletes a key if its value matches (IFEQ) or differs (IFNE).", run: delex },
    CommandSpec { name: "unlink", arity: -2, flags: &["write", "fast"], keys: (1, -1, 1), group: "generic", since: "4.0.0", summary: "Deletes one or more keys.", run: del },
    CommandSpec { name: "exists", arity: -2, flags: &["readonly", "fast"], keys: (1, -1, 1), group: "generic", since: "1.0.0", summary: "Determines whether one or more keys exist.", run: exists },
    CommandSpec { name: "touch", arity: -2, flags: &["readonly", "fast"], keys: (1, -1, 1), group: "generic", since: "3.2.1", summary: "Returns the number of existing keys out of those specified after updating the time they were last accessed.", run: touch },
    CommandSpec { name: "rename", arity: 3, flags: &["write"], keys: (1, 2, 1), group: "generic", since: "1.0.0", summary: "Renames a key and overwrites the destination.", run: rename },
    CommandSpec { name: "renamenx", arity: 3, flags: &["write", "fast"], keys: (1, 2, 1), group: "generic", since: "1.0.0", summary: "Renames a key only when the target key name doesn't exist.", run: rename },
    CommandSpec { name: "copy", arity: -3, flags: &["write", "denyoom"], keys: (1, 2, 1), group: "generic", since: "6.2.0", summary: "Copies the value of a key to a new key (DB 0 only: the broker has one database).", run: copy },
    CommandSpec { name: "randomkey", arity: 1, flags: &["readonly"], keys: (0, 0, 0), group: "generic", since: "1.0.0", summary: "Returns a random key name from the database.", run: randomkey },
    CommandSpec { name: "object", arity: -2, flags: &[], keys: (0, 0, 0), group: "generic", since: "2.2.3", summary: "Inspects the internals of values: ENCODING, REFCOUNT, IDLETIME, FREQ, HELP.", run: object },
    CommandSpec { name: "keys", arity: 2, flags: &["readonly"], keys: (0, 0, 0), group: "generic", since: "1.0.0", summary: "Returns all key names that match a pattern.", run: keys },
    CommandSpec { name: "scan", arity: -2, flags: &["readonly"], keys: (0, 0, 0), group: "generic", since: "2.8.0", summary: "Iterates over the key names in the database.", run: scan },
    CommandSpec { name: "dbsize", arity: 1, flags: &["readonly", "fast"], keys: (0, 0, 0), group: "server", since: "1.0.0", summary: "Returns the number of keys in the database.", run: dbsize },
    CommandSpec { name: "flushdb", arity: -1, flags: &["write"], keys: (0, 0, 0), group: "server", since: "1.0.0", summary: "Removes all keys from the current database.", run: flush },
    CommandSpec { name: "flushall", arity: -1, flags: &["write"], keys: (0, 0, 0), group: "server", since: "1.0.0", summary: "Removes all keys from all databases.", run: flush },
    CommandSpec { name: "type", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "generic", since: "1.0.0", summary: "Determines the type of value stored at a key.", run: type_of },
    CommandSpec { name: "expire", arity: -3, flags: &["write", "fast"], keys: (1, 1, 1), group: "generic", since: "1.0.0", summary: "Sets the expiration time of a key in seconds.", run: expire },
    CommandSpec { name: "pexpire", arity: -3, flags: &["write", "fast"], keys: (1, 1, 1), group: "generic", since: "2.6.0", summary: "Sets the expiration time of a key in milliseconds.", run: expire },
    CommandSpec { name: "expireat", arity: -3, flags: &["write", "fast"], keys: (1, 1, 1), group: "generic", since: "1.2.0", summary: "Sets the expiration time of a key to a Unix timestamp.", run: expire },
    CommandSpec { name: "pexpireat", arity: -3, flags: &["write", "fast"], keys: (1, 1, 1), group: "generic", since: "2.6.0", summary: "Sets the expiration time of a key to a Unix milliseconds timestamp.", run: expire },
    CommandSpec { name: "ttl", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "generic", since: "1.0.0", summary: "Returns the expiration time in seconds of a key.", run: ttl },
    CommandSpec { name: "pttl", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "generic", since: "2.6.0", summary: "Returns the expiration time in milliseconds of a key.", run: ttl },
    CommandSpec { name: "expiretime", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "generic", since: "7.0.0", summary: "Returns the expiration time of a key as a Unix timestamp.", run: ttl },
    CommandSpec { name: "pexpiretime", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "generic", since: "7.0.0", summary: "Returns the expiration time of a key as a Unix milliseconds timestamp.", run: ttl },
    CommandSpec { name: "persist", arity: 2, flags: &["write", "fast"], keys: (1, 1, 1), group: "generic", since: "2.2.0", summary: "Removes the expiration time of a key.", run: persist },
];

fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut removed = 0;
    for key in &args[1..] {
        if ctx.ks.remove(key, ctx.now) {
            ctx.ks.notify(notify::GENERIC, "del", key);
            removed += 1;
        }
    }
    Frame::Integer(removed as i64)
}

/// DELEX key [IFEQ value | IFNE value]: a conditional delete.
fn delex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let current = match ctx.ks.get(&args[1], ctx.now) {
        None => return Frame::Integer(0),
        Some(entry) => Bytes::copy_from_slice(entry.value()),
    };
    let matches = match &args[2..] {
        [] => true,
        [option, value] if is(option, "IFEQ") => current == value,
        [option, value] if is(option, "IFNE") => current != value,
        _ => return syntax_error(),
    };
    if matches {
        ctx.ks.remove(&args[1], ctx.now);
        ctx.ks.notify(notify::GENERIC, "del", &args[1]);
    }
    Frame::Integer(matches as i64)
}

fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    // Counts repeated keys once per mention, as Redis does.
    let found = args[1..].iter().filter(|key| ctx.ks.contains(key, ctx.now)).count();
    Frame::Integer(found as i64)
}

/// TOUCH key [key ...]: how many exist; each one's last access becomes now.
fn touch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let touched = args[1..].iter().filter(|key| ctx.ks.read(key, ctx.now).is_some()).count();
    Frame::Integer(touched as i64)
}

/// RENAME / RENAMENX key newkey: the value moves with its ttl. RENAME
/// replaces what newkey held (without a `del` event, as in Redis);
/// RENAMENX does nothing then.
fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let nx = is(&args[0], "RENAMENX");
    let (from, to) = (&args[1], &args[2]);
    if !ctx.ks.contains(from, ctx.now) {
        return Frame::error("ERR no such key");
    }
    if from == to || (nx && ctx.ks.contains(to, ctx.now)) {
        return if nx { Frame::Integer(0) } else { Frame::ok() };
    }
    ctx.ks.rename(from, to, ctx.now);
    ctx.ks.notify(notify::GENERIC, "rename_from", from);
    ctx.ks.notify(notify::GENERIC, "rename_to", to);
    if nx {
        Frame::Integer(1)
    } else {
        Frame::ok()
    }
}

/// COPY source destination [DB index] [REPLACE]: the value and its ttl.
fn copy(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "REPLACE") {
            replace = true;
        } else if is(&args[i], "DB") && i + 1 < args.len() {
            try_reply!(db_index_arg(&args[i + 1]));
            i += 1;
        } else {
            return syntax_error();
        }
        i += 1;
    }
    let (from, to) = (&args[1], &args[2]);
    if from == to {
        return Frame::error("ERR source and destination objects are the same");
    }
    let (value, expiry) = match ctx.ks.read(from, ctx.now) {
        None => return Frame::Integer(0),
        Some(entry) => (Bytes::copy_from_slice(entry.value()), entry.expires_at().map_or(Expiry::Clear, Expiry::At)),
    };
    if !replace && ctx.ks.contains(to, ctx.now) {
        return Frame::Integer(0);
    }
    ctx.ks.set(to, &value, expiry, ctx.now);
    ctx.ks.notify(notify::GENERIC, "copy_to", to);
    Frame::Integer(1)
}

/// The bytes a COPY would add to the store (its source's value, which its
/// arguments do not tell), for its memory admission; None without a source.
pub fn copy_growth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Option<usize> {
    ctx.ks.get(&args[1], ctx.now).map(|entry| args[2].len() + entry.value().len())
}

fn randomkey(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.ks.random_key(ctx.now).map_or(Frame::Null, Frame::Bulk)
}

/// How Redis would encode a string value it is given (as SET stores it): an
/// integer in canonical form that fits 64 bits is `int`, other values of up
/// to 44 bytes are `embstr`, longer ones `raw`.
fn encoding(value: &[u8]) -> &'static str {
    let canonical_integer = value.len() <= 20
        && crate::resp::parse_i64(value).is_some_and(|n| itoa::Buffer::new().format(n).as_bytes() == value);
    if canonical_integer {
        "int"
    } else if value.len() <= 44 {
        "embstr"
    } else {
        "raw"
    }
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// OBJECT ENCODING | REFCOUNT | IDLETIME | FREQ key, OBJECT HELP. Looking a
/// key up here does not count as an access.
fn object(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let Some(name) = ["ENCODING", "REFCOUNT", "IDLETIME", "FREQ", "HELP"].into_iter().find(|s| is(sub, s)) else {
        return unknown_subcommand(sub, "object");
    };
    if args.len() != if name == "HELP" { 2 } else { 3 } {
        return super::wrong_arity(&format!("object|{}", name.to_ascii_lowercase()));
    }
    if name == "HELP" {
        return Frame::Array(OBJECT_HELP.iter().map(|line| Frame::Simple((*line).into())).collect());
    }
    let Some(entry) = ctx.ks.get(&args[2], ctx.now) else {
        return Frame::Null;
    };
    match name {
        "ENCODING" => Frame::bulk_str(encoding(entry.value())),
        // Values are never shared between keys.
        "REFCOUNT" => Frame::Integer(1),
        "IDLETIME" => Frame::Integer((entry.idle_ms(ctx.now) / 1000) as i64),
        _ => Frame::error(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
}

fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let pattern = try_reply!(pattern_arg(&args[1]));
    Frame::Array(ctx.ks.keys(pattern, ctx.now).into_iter().map(Frame::Bulk).collect())
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let cursor = match std::str::from_utf8(&args[1]).ok().and_then(|s| s.parse::<u64>().ok()) {
        Some(c) => c,
        None => return Frame::error("ERR invalid cursor"),
    };
    let mut pattern: Option<&Bytes> = None;
    let mut count = 10usize;
    let mut type_filter: Option<&Bytes> = None;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else { return syntax_error() };
        if is(&args[i], "MATCH") {
            pattern = Some(try_reply!(pattern_arg(value))).filter(|p| p.as_ref() != b"*");
        } else if is(&args[i], "COUNT") {
            let n = try_reply!(int_arg(value));
            if n < 1 {
                return syntax_error();
            }
            count = n as usize;
        } else if is(&args[i], "TYPE") {
            type_filter = Some(value);
        } else {
            return syntax_error();
        }
        i += 2;
    }
    let glob = pattern.map(|p| Glob::new(p));
    let (next, found) = ctx.ks.scan(
        cursor,
        count,
        |key| glob.as_ref().is_none_or(|g| g.matches(key)) && type_filter.is_none_or(|t| is(t, VALUE_TYPE)),
        ctx.now,
    );
    Frame::Array(vec![Frame::bulk(next.to_string()), Frame::Array(found.into_iter().map(Frame::Bulk).collect())])
}

fn dbsize(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    Frame::Integer(ctx.ks.len() as i64)
}

fn flush(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match args.get(1) {
        None => {}
        Some(mode) if args.len() == 2 && (is(mode, "ASYNC") || is(mode, "SYNC")) => {}
        Some(_) => return syntax_error(),
    }
    ctx.ks.clear();
    Frame::ok()
}

fn type_of(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let name = ctx.ks.get(&args[1], ctx.now).map_or("none", |e| e.type_name());
    Frame::Simple(name.into())
}

/// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT key amount [NX | XX | GT | LT]
fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    let amount = try_reply!(int_arg(&args[2]));
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for option in &args[3..] {
        if is(option, "NX") {
            nx = true;
        } else if is(option, "XX") {
            xx = true;
        } else if is(option, "GT") {
            gt = true;
        } else if is(option, "LT") {
            lt = true;
        } else {
            return Frame::error(format!("ERR Unsupported option {}", String::from_utf8_lossy(option)));
        }
    }
    if nx && (xx || gt || lt) {
        return Frame::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Frame::error("ERR GT and LT options at the same time are not compatible");
    }
    let invalid = || Frame::error(format!("ERR invalid expire time in '{name}' command"));
    let millis = match name.as_str() {
        "expire" | "expireat" => try_reply!(amount.checked_mul(1000).ok_or_else(invalid)),
        _ => amount,
    };
    let at = match name.as_str() {
        "expire" | "pexpire" => try_reply!(millis.checked_add(ctx.now as i64).ok_or_else(invalid)),
        _ => millis,
    };

    let Some(entry) = ctx.ks.get(&args[1], ctx.now) else {
        return Frame::Integer(0);
    };
    // A persistent key counts as expiring never (infinitely late).
    let current = entry.expires_at().map_or(i128::MAX, i128::from);
    let refused = (nx && entry.expires_at().is_some())
        || (xx && entry.expires_at().is_none())
        || (gt && i128::from(at) <= current)
        || (lt && i128::from(at) >= current);
    if refused {
        return Frame::Integer(0);
    }
    if at <= ctx.now as i64 {
        ctx.ks.remove(&args[1], ctx.now);
        ctx.ks.notify(notify::GENERIC, "del", &args[1]);
    } else {
        ctx.ks.set_expiry(&args[1], Some(at as u64), ctx.now);
        ctx.ks.notify(notify::GENERIC, "expire", &args[1]);
    }
    Frame::Integer(1)
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for no expiry.
fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let name = &args[0];
    let Some(entry) = ctx.ks.get(&args[1], ctx.now) else {
        return Frame::Integer(-2);
    };
    let Some(at) = entry.expires_at() else {
        return Frame::Integer(-1);
    };
    let left = at.saturating_sub(ctx.now);
    let value = if is(name, "TTL") {
        (left + 500) / 1000
    } else if is(name, "PTTL") {
        left
    } else if is(name, "EXPIRETIME") {
        at / 1000
    } else {
        at
    };
    Frame::Integer(value as i64)
}

fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match ctx.ks.get(&args[1], ctx.now) {
        Some(entry) if entry.expires_at().is_some() => {
            ctx.ks.set_expiry(&args[1], None, ctx.now);
            ctx.ks.notify(notify::GENERIC, "persist", &args[1]);
            Frame::Integer(1)
        }
        _ => Frame::Integer(0),
    }
}

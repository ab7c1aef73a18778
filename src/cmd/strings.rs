//! String commands: GET, SET and its variants (SETNX, SETEX, PSETEX, GETEX,
//! GETSET, GETDEL), MGET, MSET, MSETNX, STRLEN, APPEND, GETRANGE, SETRANGE
//! and the counters.

use bytes::Bytes;

use super::{int_arg, is, syntax_error, try_reply, wrong_arity, CommandSpec, Ctx};
use crate::resp::Frame;
use crate::store::{notify, Entry, Expiry};

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "get", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Returns the string value of a key.", run: get },
    CommandSpec { name: "set", arity: -3, flags: &["write", "denyoom"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Sets the string value of a key, with optional expiry and conditions.", run: set },
    CommandSpec { name: "getdel", arity: 2, flags: &["write", "fast"], keys: (1, 1, 1), group: "string", since: "6.2.0", summary: "Returns the string value of a key after deleting the key.", run: getdel },
    CommandSpec { name: "getset", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Returns the previous string value of a key after setting it to a new value.", run: getset },
    CommandSpec { name: "mget", arity: -2, flags: &["readonly", "fast"], keys: (1, -1, 1), group: "string", since: "1.0.0", summary: "Atomically returns the string values of one or more keys.", run: mget },
    CommandSpec { name: "mset", arity: -3, flags: &["write", "denyoom"], keys: (1, -1, 2), group: "string", since: "1.0.1", summary: "Atomically creates or modifies the string values of one or more keys.", run: mset },
    CommandSpec { name: "incr", arity: 2, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Increments the integer value of a key by one.", run: incr },
    CommandSpec { name: "decr", arity: 2, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Decrements the integer value of a key by one.", run: incr },
    CommandSpec { name: "incrby", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Increments the integer value of a key by a number.", run: incr },
    CommandSpec { name: "decrby", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Decrements the integer value of a key by a number.", run: incr },
    CommandSpec { name: "shm.incrby", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "cluster-shm", since: "0.1.0", summary: "Increments an integer like INCRBY, but refuses, changing nothing, a result past 2^53 - 1 either way.", run: incr },
    CommandSpec { name: "incrbyfloat", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "2.6.0", summary: "Increments the floating point value of a key by a number.", run: incr_by_float },
    CommandSpec { name: "setnx", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Sets the string value of a key only when the key doesn't exist.", run: setnx },
    CommandSpec { name: "setex", arity: 4, flags: &["write", "denyoom"], keys: (1, 1, 1), group: "string", since: "2.0.0", summary: "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", run: setex },
    CommandSpec { name: "psetex", arity: 4, flags: &["write", "denyoom"], keys: (1, 1, 1), group: "string", since: "2.6.0", summary: "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", run: setex },
    CommandSpec { name: "getex", arity: -2, flags: &["write", "fast"], keys: (1, 1, 1), group: "string", since: "6.2.0", summary: "Returns the string value of a key after setting its expiration time.", run: getex },
    CommandSpec { name: "msetnx", arity: -3, flags: &["write", "denyoom"], keys: (1, -1, 2), group: "string", since: "1.0.1", summary: "Atomically modifies the string values of one or more keys only when all keys don't exist.", run: msetnx },
    CommandSpec { name: "append", arity: 3, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "string", since: "2.0.0", summary: "Appends a string to the value of a key. Creates the key if it doesn't exist.", run: append },
    CommandSpec { name: "getrange", arity: 4, flags: &["readonly"], keys: (1, 1, 1), group: "string", since: "2.4.0", summary: "Returns a substring of the string stored at a key.", run: getrange },
    CommandSpec { name: "substr", arity: 4, flags: &["readonly"], keys: (1, 1, 1), group: "string", since: "1.0.0", summary: "Returns a substring from a string value.", run: getrange },
    CommandSpec { name: "setrange", arity: 4, flags: &["write", "denyoom"], keys: (1, 1, 1), group: "string", since: "2.2.0", summary: "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", run: setrange },
    CommandSpec { name: "strlen", arity: 2, flags: &["readonly", "fast"], keys: (1, 1, 1), group: "string", since: "2.2.0", summary: "Returns the length of a string value.", run: strlen },
];

/// The string held by an entry. Other types, once there are any, get
/// WRONGTYPE here.
fn string_of(entry: &Entry) -> Result<&[u8], Frame> {
    Ok(entry.value())
}

/// The reply for reading a key as a string: its bulk, nil, or WRONGTYPE.
fn read_string(ctx: &mut Ctx<'_>, key: &[u8]) -> Frame {
    match ctx.ks.read_value(key, ctx.now) {
        None => Frame::Null,
        Some(value) => Frame::Bulk(Bytes::from(value)),
    }
}

fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    read_string(ctx, &args[1])
}

fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    // MGET never fails on a wrong type: such keys read as nil.
    Frame::Array(
        args[1..]
            .iter()
            .map(|key| match ctx.ks.read_value(key, ctx.now) {
                Some(value) => Frame::Bulk(Bytes::from(value)),
                None => Frame::Null,
            })
            .collect(),
    )
}

fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len().is_multiple_of(2) {
        return wrong_arity("mset");
    }
    set_pairs(ctx, &args[1..]);
    Frame::ok()
}

/// Writes each key-value pair, as MSET and MSETNX do.
fn set_pairs(ctx: &mut Ctx<'_>, pairs: &[Bytes]) {
    for pair in pairs.chunks_exact(2) {
        ctx.ks.set(&pair[0], &pair[1], Expiry::Clear, ctx.now);
        ctx.ks.notify(notify::STRING, "set", &pair[0]);
    }
}

/// MSETNX key value [key value ...]: all or nothing, and nothing when any
/// of the keys exists.
fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if args.len().is_multiple_of(2) {
        return wrong_arity("msetnx");
    }
    if args[1..].iter().step_by(2).any(|key| ctx.ks.contains(key, ctx.now)) {
        return Frame::Integer(0);
    }
    set_pairs(ctx, &args[1..]);
    Frame::Integer(1)
}

fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (_, written) = try_reply!(write(ctx, &args[1], &args[2], Condition::IfAbsent, Expiry::Clear, false));
    Frame::Integer(written as i64)
}

/// SETEX key seconds value, PSETEX key milliseconds value.
fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (unit, command) = if is(&args[0], "PSETEX") { ("PX", "psetex") } else { ("EX", "setex") };
    let at = try_reply!(deadline(unit.as_bytes(), try_reply!(int_arg(&args[2])), ctx.now, command));
    try_reply!(write(ctx, &args[1], &args[3], Condition::Always, Expiry::At(at), false));
    Frame::ok()
}

/// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]: GET that also
/// sets or removes the ttl. A missing key is nil, whatever the amount.
fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let options = try_reply!(parse_options(args, 2, false));
    let key = &args[1];
    let (value, has_ttl) = match ctx.ks.read(key, ctx.now) {
        None => return Frame::Null,
        Some(entry) => (Bytes::copy_from_slice(try_reply!(string_of(&entry))), entry.expires_at().is_some()),
    };
    match try_reply!(options.deadline(ctx.now, "getex")) {
        // EXAT or PXAT in the past.
        Some(at) if at <= ctx.now => {
            ctx.ks.remove(key, ctx.now);
            ctx.ks.notify(notify::GENERIC, "del", key);
        }
        Some(at) => {
            ctx.ks.set_expiry(key, Some(at), ctx.now);
            ctx.ks.notify(notify::GENERIC, "expire", key);
        }
        None if options.persist && has_ttl => {
            ctx.ks.set_expiry(key, None, ctx.now);
            ctx.ks.notify(notify::GENERIC, "persist", key);
        }
        None => {}
    }
    Frame::Bulk(value)
}

/// Redis's answer for a string that would grow past `proto-max-bulk-len`.
fn too_long() -> Frame {
    Frame::error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
}

/// Whether a string of `offset + len` bytes stays within `proto-max-bulk-len`.
fn check_length(ctx: &Ctx<'_>, offset: usize, len: usize) -> Result<(), Frame> {
    let max = ctx.db.input_limits().0.max_bulk_len;
    offset.checked_add(len).filter(|&total| total <= max).map(|_| ()).ok_or_else(too_long)
}

/// APPEND key value: the new length. Keeps the ttl.
fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, suffix) = (&args[1], &args[2]);
    let len = match ctx.ks.get(key, ctx.now) {
        None => {
            ctx.ks.set(key, suffix, Expiry::Clear, ctx.now);
            suffix.len()
        }
        Some(entry) => {
            let current = try_reply!(string_of(&entry)).len();
            try_reply!(check_length(ctx, current, suffix.len()));
            ctx.ks.write_at(key, current, suffix, ctx.now).expect("live key")
        }
    };
    ctx.ks.notify(notify::STRING, "append", key);
    Frame::Integer(len as i64)
}

/// GETRANGE key start end (and SUBSTR): inclusive, negative counting from
/// the end, clamped to the string; an empty string for a missing key.
fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let start = try_reply!(int_arg(&args[2]));
    let end = try_reply!(int_arg(&args[3]));
    let empty = Frame::Bulk(Bytes::new());
    let entry = ctx.ks.read(&args[1], ctx.now);
    let value = match &entry {
        None => return empty,
        Some(entry) => try_reply!(string_of(entry)),
    };
    if start < 0 && end < 0 && start > end {
        return empty;
    }
    let len = value.len() as i128;
    let from_end = |i: i64| if i < 0 { (len + i128::from(i)).max(0) } else { i128::from(i) };
    let (start, end) = (from_end(start), from_end(end).min(len - 1));
    if start > end || len == 0 {
        return empty;
    }
    Frame::Bulk(Bytes::copy_from_slice(&value[start as usize..=end as usize]))
}

/// SETRANGE key offset value: the new length. Keeps the ttl; a missing key
/// is created, zero filled up to the offset.
fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (key, bytes) = (&args[1], &args[3]);
    let offset = try_reply!(int_arg(&args[2]));
    let Ok(offset) = usize::try_from(offset) else {
        return Frame::error("ERR offset is out of range");
    };
    let current = match ctx.ks.get(key, ctx.now) {
        None => None,
        Some(entry) => Some(try_reply!(string_of(&entry)).len()),
    };
    if bytes.is_empty() {
        // Writing nothing changes nothing, even past the end.
        return Frame::Integer(current.unwrap_or(0) as i64);
    }
    try_reply!(check_length(ctx, offset, bytes.len()));
    if current.is_none() {
        // Created empty, then grown in place: one allocation of the size.
        ctx.ks.set(key, b"", Expiry::Clear, ctx.now);
    }
    let len = ctx.ks.write_at(key, offset, bytes, ctx.now).expect("live key");
    ctx.ks.notify(notify::STRING, "setrange", key);
    Frame::Integer(len as i64)
}

/// The bytes a SETRANGE would add to the store, for its memory admission
/// (its arguments do not tell: a small offset can grow a string a lot).
/// None when the command will be refused anyway.
pub fn setrange_growth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Option<usize> {
    let offset = usize::try_from(crate::resp::parse_i64(&args[2])?).ok()?;
    if args[3].is_empty() {
        // Writes nothing, wherever.
        return Some(0);
    }
    check_length(ctx, offset, args[3].len()).ok()?;
    let current = match ctx.ks.get(&args[1], ctx.now) {
        None => return Some(args[1].len() + offset + args[3].len()),
        Some(entry) => entry.value().len(),
    };
    Some((offset + args[3].len()).saturating_sub(current))
}

fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    match ctx.ks.read(&args[1], ctx.now) {
        None => Frame::Integer(0),
        Some(entry) => Frame::Integer(try_reply!(string_of(&entry)).len() as i64),
    }
}

fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let reply = read_string(ctx, &args[1]);
    if let Frame::Bulk(_) = reply {
        ctx.ks.remove(&args[1], ctx.now);
        ctx.ks.notify(notify::GENERIC, "del", &args[1]);
    }
    reply
}

fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let reply = read_string(ctx, &args[1]);
    if !reply.is_error() {
        ctx.ks.set(&args[1], &args[2], Expiry::Clear, ctx.now);
        ctx.ks.notify(notify::STRING, "set", &args[1]);
    }
    reply
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition<'a> {
    Always,
    IfAbsent,
    IfPresent,
    /// The current value equals this one (Redis 8.4's IFEQ): compare-and-set.
    IfEqual(&'a Bytes),
    /// The key is missing or its value differs (IFNE).
    IfNotEqual(&'a Bytes),
}

/// The options of SET and GETEX, parsed as Redis 7 parses them: conflicting
/// options are a syntax error, a repeated one is not (the last amount of a
/// repeated EX, PX, EXAT or PXAT counts). Amounts are checked only once the
/// whole line has parsed.
struct Options<'a> {
    condition: Condition<'a>,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    /// EX, PX, EXAT or PXAT, and its amount as given.
    expire: Option<(&'a Bytes, &'a Bytes)>,
}

const EXPIRE_UNITS: [&str; 4] = ["EX", "PX", "EXAT", "PXAT"];

/// Parses `args[first..]`: SET's options when `set`, else GETEX's.
fn parse_options(args: &[Bytes], first: usize, set: bool) -> Result<Options<'_>, Frame> {
    let mut o = Options { condition: Condition::Always, get: false, keep_ttl: false, persist: false, expire: None };
    let mut i = first;
    while i < args.len() {
        let option = &args[i];
        let next = args.get(i + 1);
        let unit = EXPIRE_UNITS.iter().find(|u| is(option, u));
        if set && is(option, "NX") && matches!(o.condition, Condition::Always | Condition::IfAbsent) {
            o.condition = Condition::IfAbsent;
        } else if set && is(option, "XX") && matches!(o.condition, Condition::Always | Condition::IfPresent) {
            o.condition = Condition::IfPresent;
        } else if set
            && next.is_some()
            && o.condition == Condition::Always
            && (is(option, "IFEQ") || is(option, "IFNE"))
        {
            let value = &args[i + 1];
            o.condition = if is(option, "IFEQ") { Condition::IfEqual(value) } else { Condition::IfNotEqual(value) };
            i += 1;
        } else if set && is(option, "GET") {
            o.get = true;
        } else if set && is(option, "KEEPTTL") && o.expire.is_none() {
            o.keep_ttl = true;
        } else if !set && is(option, "PERSIST") && o.expire.is_none() {
            o.persist = true;
        } else if let (Some(unit), Some(amount)) = (unit, next) {
            // Another unit than the one already given conflicts with it.
            if o.keep_ttl || o.persist || o.expire.is_some_and(|(given, _)| !is(given, unit)) {
                return Err(syntax_error());
            }
            o.expire = Some((option, amount));
            i += 1;
        } else {
            return Err(syntax_error());
        }
        i += 1;
    }
    Ok(o)
}

impl Options<'_> {
    /// The deadline of EX, PX, EXAT or PXAT, if one was given, with Redis's
    /// errors for its amount.
    fn deadline(&self, now: u64, command: &str) -> Result<Option<u64>, Frame> {
        match self.expire {
            None => Ok(None),
            Some((unit, amount)) => deadline(unit, int_arg(amount)?, now, command).map(Some),
        }
    }
}

/// SET key value [NX | XX | IFEQ v | IFNE v] [GET]
///     [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]
fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let options = try_reply!(parse_options(args, 3, true));
    let expiry = match try_reply!(options.deadline(ctx.now, "set")) {
        Some(at) => Expiry::At(at),
        None if options.keep_ttl => Expiry::Keep,
        None => Expiry::Clear,
    };
    let (old, written) = try_reply!(write(ctx, &args[1], &args[2], options.condition, expiry, options.get));
    match (options.get, written) {
        (true, _) => old.map_or(Frame::Null, Frame::Bulk),
        (false, true) => Frame::ok(),
        (false, false) => Frame::Null,
    }
}

/// What SET and its variants share: writes `value` under `key` if the
/// condition holds, with its notifications. Returns the previous value (when
/// `return_old`) and whether the value was written.
fn write(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    value: &[u8],
    condition: Condition<'_>,
    expiry: Expiry,
    return_old: bool,
) -> Result<(Option<Bytes>, bool), Frame> {
    let (old, allowed) = match (&condition, return_old) {
        // Nothing to compare or return: the key is not read.
        (Condition::Always, false) => (None, true),
        (Condition::IfAbsent, false) => (None, !ctx.ks.contains(key, ctx.now)),
        _ => {
            let entry = ctx.ks.get(key, ctx.now);
            let current = match &entry {
                None => None,
                Some(entry) => Some(string_of(entry)?),
            };
            let allowed = match condition {
                Condition::Always => true,
                Condition::IfAbsent => current.is_none(),
                Condition::IfPresent => current.is_some(),
                Condition::IfEqual(expected) => current == Some(&expected[..]),
                Condition::IfNotEqual(unexpected) => current != Some(&unexpected[..]),
            };
            (current.filter(|_| return_old).map(Bytes::copy_from_slice), allowed)
        }
    };
    if allowed {
        match expiry {
            // A deadline already passed: the key is written and expires at
            // once, as in Redis.
            Expiry::At(at) if at <= ctx.now => {
                ctx.ks.remove(key, ctx.now);
                ctx.ks.notify(notify::GENERIC, "del", key);
            }
            _ => {
                ctx.ks.set(key, value, expiry, ctx.now);
                ctx.ks.notify(notify::STRING, "set", key);
                if let Expiry::At(_) = expiry {
                    ctx.ks.notify(notify::GENERIC, "expire", key);
                }
            }
        }
    }
    Ok((old, allowed))
}

/// Converts an EX/PX/EXAT/PXAT amount to an absolute Unix ms deadline, with
/// Redis's `invalid expire time` error for non-positive or overflowing input.
pub fn deadline(unit: &[u8], amount: i64, now: u64, command: &str) -> Result<u64, Frame> {
    let invalid = || Frame::error(format!("ERR invalid expire time in '{command}' command"));
    if amount <= 0 {
        return Err(invalid());
    }
    let amount = amount as u64;
    let at = if is(unit, "EX") {
        amount.checked_mul(1000).and_then(|ms| ms.checked_add(now))
    } else if is(unit, "PX") {
        amount.checked_add(now)
    } else if is(unit, "EXAT") {
        amount.checked_mul(1000)
    } else {
        Some(amount)
    };
    at.filter(|&at| at <= i64::MAX as u64).ok_or_else(invalid)
}

/// SHM.INCRBY's answer for a result past ±(2^53 - 1); the Redis backend's
/// script (lib/redis.js) gives the same.
const SAFE_RANGE_ERROR: &str = "ERR increment or decrement would pass 2^53 - 1 either way, beyond which a JavaScript number does not hold every integer";

/// The largest integer up to which a JavaScript number holds every integer
/// (Number.MAX_SAFE_INTEGER): SHM.INCRBY refuses results past it.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// INCR, DECR, INCRBY, DECRBY: integer arithmetic on a string value, keeping
/// the key's expiry, with Redis's errors for non-integers and overflow.
/// SHM.INCRBY, the API's `incr`, also refuses a result its caller could not
/// hold exactly.
fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let name = &args[0];
    let amount = if args.len() == 3 { try_reply!(int_arg(&args[2])) } else { 1 };
    let delta = if is(name, "DECR") || is(name, "DECRBY") {
        match amount.checked_neg() {
            Some(d) => d,
            None => return Frame::error("ERR decrement would overflow"),
        }
    } else {
        amount
    };
    let current = match ctx.ks.get(&args[1], ctx.now) {
        None => 0,
        Some(entry) => {
            try_reply!(crate::resp::parse_i64(try_reply!(string_of(&entry))).ok_or_else(super::not_an_integer))
        }
    };
    let Some(next) = current.checked_add(delta) else {
        return Frame::error("ERR increment or decrement would overflow");
    };
    if next.unsigned_abs() > MAX_SAFE_INTEGER && is(name, "SHM.INCRBY") {
        return Frame::error(SAFE_RANGE_ERROR);
    }
    let mut text = itoa::Buffer::new();
    ctx.ks.set(&args[1], text.format(next).as_bytes(), Expiry::Keep, ctx.now);
    ctx.ks.notify(notify::STRING, "incrby", &args[1]);
    Frame::Integer(next)
}

/// INCRBYFLOAT: the result is stored and returned as its shortest decimal
/// form, without exponent (Redis's human-friendly format).
fn incr_by_float(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let not_float = || Frame::error("ERR value is not a valid float");
    let parse = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .filter(|s| !s.is_empty() && s.trim() == *s)
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|x| x.is_finite())
    };
    let delta = try_reply!(parse(&args[2]).ok_or_else(not_float));
    let current = match ctx.ks.get(&args[1], ctx.now) {
        None => 0.0,
        Some(entry) => try_reply!(parse(try_reply!(string_of(&entry))).ok_or_else(not_float)),
    };
    let next = current + delta;
    if !next.is_finite() {
        return Frame::error("ERR increment would produce NaN or Infinity");
    }
    let text = Bytes::from(format!("{next}"));
    ctx.ks.set(&args[1], &text, Expiry::Keep, ctx.now);
    ctx.ks.notify(notify::STRING, "incrbyfloat", &args[1]);
    Frame::Bulk(text)
}

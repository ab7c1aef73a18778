//! Commands: the table every command is registered in, argument helpers, and
//! the dispatch shared by socket connections and the primary's in-process
//! calls. One module per command family.

mod connection;
mod keys;
mod server;
mod strings;

use std::collections::HashMap;
use std::sync::LazyLock;

use bytes::Bytes;

use crate::resp::{parse_i64, Frame};
use crate::store::{Db, Keyspace};

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
}

impl Session {
    pub fn new(id: u64) -> Session {
        Session { id, ..Session::default() }
    }
}

/// What a command runs against.
pub struct Ctx<'a> {
    pub db: &'a Db,
    pub ks: &'a mut Keyspace,
    pub session: &'a mut Session,
    /// Unix ms, read once per batch of commands.
    pub now: u64,
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
    [connection::COMMANDS, strings::COMMANDS, keys::COMMANDS, server::COMMANDS].into_iter().flatten()
}

static TABLE: LazyLock<HashMap<&'static str, &'static CommandSpec>> =
    LazyLock::new(|| all_commands().map(|c| (c.name, c)).collect());

pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    TABLE.get(std::str::from_utf8(lower).ok()?).copied()
}

/// Runs one command and returns its reply. Never panics on client input.
pub fn execute(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(name) = args.first() else {
        return Frame::error("ERR empty command");
    };
    let Some(spec) = lookup(name) else {
        return unknown_command(args);
    };
    let argc = args.len() as i32;
    if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
        return wrong_arity(spec.name);
    }
    (spec.run)(ctx, args)
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

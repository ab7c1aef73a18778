//! Connection commands: PING, ECHO, QUIT, SELECT, HELLO, CLIENT, AUTH.
//! CLIENT TRACKING turns on client-side caching (see `store::tracking`).

use bytes::Bytes;

use super::{
    db_index_arg, int_arg, is, syntax_error, try_reply, unknown_subcommand, wrong_arity, CommandSpec, Ctx,
    BROKER_VERSION, REDIS_VERSION,
};
use crate::resp::Frame;

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "ping", arity: -1, flags: &["fast", "stale"], keys: (0, 0, 0), group: "connection", since: "1.0.0", summary: "Returns the server's liveliness response.", run: ping },
    CommandSpec { name: "echo", arity: 2, flags: &["fast"], keys: (0, 0, 0), group: "connection", since: "1.0.0", summary: "Returns the given string.", run: echo },
    CommandSpec { name: "quit", arity: -1, flags: &["fast", "noscript", "loading", "stale", "no_auth"], keys: (0, 0, 0), group: "connection", since: "1.0.0", summary: "Closes the connection.", run: quit },
    CommandSpec { name: "select", arity: 2, flags: &["loading", "stale", "fast"], keys: (0, 0, 0), group: "connection", since: "1.0.0", summary: "Changes the selected database (only 0 exists).", run: select },
    CommandSpec { name: "hello", arity: -1, flags: &["noscript", "loading", "stale", "fast", "no_auth"], keys: (0, 0, 0), group: "connection", since: "6.0.0", summary: "Handshakes with the server (RESP2 only).", run: hello },
    CommandSpec { name: "client", arity: -2, flags: &["sentinel"], keys: (0, 0, 0), group: "connection", since: "2.4.0", summary: "Client connection commands: ID, SETNAME, GETNAME, SETINFO, INFO, NO-EVICT, NO-TOUCH, TRACKING, TRACKINGINFO, GETREDIR.", run: client },
    CommandSpec { name: "auth", arity: -2, flags: &["noscript", "loading", "stale", "fast", "no_auth"], keys: (0, 0, 0), group: "connection", since: "1.0.0", summary: "Authenticates the connection.", run: auth },
];

fn ping(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if !ctx.session.pushes && ctx.ks.pubsub.is_subscribed(ctx.session.id) {
        // In subscribed mode PING answers in the shape of a message.
        let message = args.get(1).cloned().unwrap_or_default();
        return Frame::Array(vec![Frame::bulk_str("pong"), Frame::Bulk(message)]);
    }
    match args.len() {
        1 => Frame::Simple("PONG".into()),
        2 => Frame::Bulk(args[1].clone()),
        _ => wrong_arity("ping"),
    }
}

fn echo(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    Frame::Bulk(args[1].clone())
}

fn quit(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    ctx.session.closing = true;
    Frame::ok()
}

fn select(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    try_reply!(db_index_arg(&args[1]));
    Frame::ok()
}

/// AUTH [username] password: only the `default` user exists.
fn auth(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let (user, password) = match args {
        [_, password] => (None, password),
        [_, user, password] => (Some(user), password),
        _ => return syntax_error(),
    };
    if ctx.db.config().requirepass.is_none() {
        return Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    try_reply!(check_credentials(ctx, user, password));
    Frame::ok()
}

/// Authenticates the session if the credentials match the broker's secret.
fn check_credentials(ctx: &mut Ctx<'_>, user: Option<&Bytes>, password: &[u8]) -> Result<(), Frame> {
    let secret = ctx.db.config().requirepass;
    let user_ok = user.is_none_or(|u| u.as_ref() == b"default");
    let password_ok = match &secret {
        None => true,
        Some(secret) => constant_time_eq(secret, password),
    };
    if user_ok && password_ok {
        ctx.session.authenticated = true;
        Ok(())
    } else {
        Err(Frame::error("WRONGPASS invalid username-password pair or user is disabled."))
    }
}

/// Compares without an early exit, so timing does not reveal the secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HELLO: RESP2 only. `HELLO 3` gets NOPROTO so that clients fall back to
/// RESP2 (ioredis and redis-cli do).
fn hello(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let mut rest = args.iter().skip(1);
    if let Some(version) = rest.next() {
        let version = match int_arg(version) {
            Ok(v) => v,
            Err(_) => return Frame::error("ERR Protocol version is not an integer or out of range"),
        };
        if version != 2 {
            return Frame::error("NOPROTO unsupported protocol version");
        }
        let mut name = None;
        while let Some(option) = rest.next() {
            if is(option, "AUTH") {
                let (Some(user), Some(password)) = (rest.next(), rest.next()) else {
                    return syntax_error();
                };
                try_reply!(check_credentials(ctx, Some(user), password));
            } else if is(option, "SETNAME") {
                let Some(value) = rest.next() else { return syntax_error() };
                name = Some(try_reply!(valid_client_name(value)));
            } else {
                return Frame::error(format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(option)));
            }
        }
        if let Some(name) = name {
            ctx.session.name = name;
        }
    }
    // Options parsed (an AUTH among them has run): only then the check.
    if !ctx.session.authenticated {
        return Frame::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    Frame::Array(vec![
        Frame::bulk_str("server"),
        Frame::bulk_str("redis"),
        Frame::bulk_str("version"),
        Frame::bulk_str(REDIS_VERSION),
        Frame::bulk_str("proto"),
        Frame::Integer(2),
        Frame::bulk_str("id"),
        Frame::Integer(ctx.session.id as i64),
        Frame::bulk_str("mode"),
        Frame::bulk_str("standalone"),
        Frame::bulk_str("role"),
        Frame::bulk_str("master"),
        Frame::bulk_str("modules"),
        Frame::Array(vec![]),
    ])
}

/// A client name may not contain spaces or control characters; empty clears it.
fn valid_client_name(name: &Bytes) -> Result<Option<Bytes>, Frame> {
    if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(Frame::error("ERR Client names cannot contain spaces, newlines or special characters."));
    }
    Ok((!name.is_empty()).then(|| name.clone()))
}

fn client(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    let argc = args.len();
    if is(sub, "ID") && argc == 2 {
        Frame::Integer(ctx.session.id as i64)
    } else if is(sub, "SETNAME") && argc == 3 {
        ctx.session.name = try_reply!(valid_client_name(&args[2]));
        Frame::ok()
    } else if is(sub, "GETNAME") && argc == 2 {
        ctx.session.name.clone().map_or(Frame::Null, Frame::Bulk)
    } else if is(sub, "SETINFO") && argc == 4 {
        let value = args[3].clone();
        if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Frame::error(format!(
                "ERR {} cannot contain spaces, newlines or special characters.",
                String::from_utf8_lossy(&args[2]).to_ascii_lowercase()
            ));
        }
        if is(&args[2], "LIB-NAME") {
            ctx.session.lib_name = Some(value);
        } else if is(&args[2], "LIB-VER") {
            ctx.session.lib_ver = Some(value);
        } else {
            return Frame::error(format!("ERR Unrecognized option '{}'", String::from_utf8_lossy(&args[2])));
        }
        Frame::ok()
    } else if is(sub, "INFO") && argc == 2 {
        Frame::bulk(client_info_line(ctx) + "\n")
    } else if is(sub, "TRACKING") && argc >= 3 {
        client_tracking(ctx, args)
    } else if is(sub, "TRACKINGINFO") && argc == 2 {
        client_tracking_info(ctx)
    } else if is(sub, "GETREDIR") && argc == 2 {
        Frame::Integer(ctx.ks.tracking.state(ctx.session.id).map_or(-1, |t| t.redirect as i64))
    } else if (is(sub, "NO-EVICT") || is(sub, "NO-TOUCH")) && argc == 3 {
        if is(&args[2], "ON") || is(&args[2], "OFF") {
            Frame::ok()
        } else {
            syntax_error()
        }
    } else if is(sub, "HELP") && argc == 2 {
        Frame::Array(
            [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ID",
                "    Return the ID of the current connection.",
                "GETNAME",
                "    Return the name of the current connection.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "    Set client library name or version.",
                "INFO",
                "    Return information about the current client connection.",
                "NO-EVICT (ON|OFF)",
                "    Accepted for compatibility.",
                "NO-TOUCH (ON|OFF)",
                "    Accepted for compatibility.",
                "TRACKING (ON|OFF) [REDIRECT <id>] [NOLOOP]",
                "    Control server assisted client side caching: invalidations go to client <id>",
                "    as messages on __redis__:invalidate (it must be subscribed).",
                "TRACKINGINFO",
                "    Report tracking status for the current connection.",
                "GETREDIR",
                "    Return the client ID we are redirecting to when tracking is enabled.",
            ]
            .iter()
            .map(|line| Frame::Simple((*line).into()))
            .collect(),
        )
    } else if ["ID", "SETNAME", "GETNAME", "SETINFO", "INFO", "NO-EVICT", "NO-TOUCH", "HELP"]
        .iter()
        .chain(&["TRACKING", "TRACKINGINFO", "GETREDIR"])
        .any(|s| is(sub, s))
    {
        Frame::error(format!(
            "ERR wrong number of arguments for 'client|{}' command",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        ))
    } else {
        unknown_subcommand(sub, "client")
    }
}

/// CLIENT TRACKING (ON|OFF) [REDIRECT id] [NOLOOP]: Redis's default
/// tracking mode with RESP2 redirection; BCAST, PREFIX, OPTIN and OPTOUT are
/// refused.
fn client_tracking(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    if ctx.mailbox.is_none() {
        // The primary's own calls read the store directly: no near cache.
        return Frame::error("ERR CLIENT TRACKING is not available to in-process calls");
    }
    let mut redirect = None;
    let mut noloop = false;
    let mut i = 3;
    while i < args.len() {
        let option = &args[i];
        let more = i + 1 < args.len();
        if is(option, "NOLOOP") {
            noloop = true;
        } else if is(option, "REDIRECT") && more {
            i += 1;
            if redirect.is_some() {
                return Frame::error("ERR A client can only redirect to a single other client");
            }
            let id = try_reply!(int_arg(&args[i]));
            if id <= 0 || !ctx.ks.tracking.is_connected(id as u64) {
                return Frame::error("ERR The client ID you want redirect to does not exist");
            }
            redirect = Some(id as u64);
        } else if let Some(name) = ["BCAST", "OPTIN", "OPTOUT"].into_iter().find(|name| is(option, name)) {
            return Frame::error(format!("ERR CLIENT TRACKING {name} is not supported by cluster-shm"));
        } else if is(option, "PREFIX") && more {
            return Frame::error("ERR CLIENT TRACKING PREFIX is not supported by cluster-shm");
        } else {
            return syntax_error();
        }
        i += 1;
    }
    if is(&args[2], "ON") {
        // Redis accepts this and sends nothing (RESP2 has no push messages);
        // refused here, so that a near cache is never silently stale.
        let Some(redirect) = redirect else {
            return Frame::error("ERR CLIENT TRACKING needs REDIRECT <client-id> with RESP2");
        };
        ctx.ks.tracking.enable(ctx.session.id, redirect, noloop);
    } else if is(&args[2], "OFF") {
        ctx.ks.tracking.disable(ctx.session.id);
    } else {
        return syntax_error();
    }
    Frame::ok()
}

/// CLIENT TRACKINGINFO, shaped as Redis's.
fn client_tracking_info(ctx: &Ctx<'_>) -> Frame {
    let state = ctx.ks.tracking.state(ctx.session.id);
    let mut flags = vec![];
    match state {
        None => flags.push(Frame::bulk_str("off")),
        Some(state) => {
            flags.push(Frame::bulk_str("on"));
            if state.noloop {
                flags.push(Frame::bulk_str("noloop"));
            }
            if state.broken {
                flags.push(Frame::bulk_str("broken_redirect"));
            }
        }
    }
    Frame::Array(vec![
        Frame::bulk_str("flags"),
        Frame::Array(flags),
        Frame::bulk_str("redirect"),
        Frame::Integer(state.map_or(-1, |s| s.redirect as i64)),
        Frame::bulk_str("prefixes"),
        Frame::Array(vec![]),
    ])
}

fn client_info_line(ctx: &Ctx<'_>) -> String {
    let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
    let tracking = ctx.ks.tracking.state(ctx.session.id);
    // Redis's letters, in its order: P subscribed, x in MULTI, t tracking,
    // R redirect client gone; N for none.
    let mut flags = String::new();
    for (set, letter) in [
        (ctx.ks.pubsub.is_subscribed(ctx.session.id), 'P'),
        (ctx.session.multi.is_some(), 'x'),
        (tracking.is_some(), 't'),
        (tracking.is_some_and(|t| t.broken), 'R'),
    ] {
        if set {
            flags.push(letter);
        }
    }
    if flags.is_empty() {
        flags.push('N');
    }
    format!(
        "id={} name={} flags={} db=0 redir={} resp=2 lib-name={} lib-ver={} broker=cluster-shm/{}",
        ctx.session.id,
        text(&ctx.session.name),
        flags,
        tracking.map_or(-1, |t| t.redirect as i64),
        text(&ctx.session.lib_name),
        text(&ctx.session.lib_ver),
        BROKER_VERSION
    )
}

//! Server commands: INFO, CONFIG, COMMAND, TIME.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{
    all_commands, is, lookup, unknown_subcommand, wrong_arity, CommandSpec, Ctx, BROKER_VERSION, REDIS_VERSION,
};
use crate::resp::Frame;
use crate::store::{glob_match, notify, snapshot, EvictionPolicy};

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "info", arity: -1, flags: &["loading", "stale"], keys: (0, 0, 0), group: "server", since: "1.0.0", summary: "Returns information and statistics about the server.", run: info },
    CommandSpec { name: "config", arity: -2, flags: &["admin", "noscript", "loading", "stale"], keys: (0, 0, 0), group: "server", since: "2.0.0", summary: "Reads (GET) and changes (SET maxmemory, maxmemory-policy, maxkeys, tracking-table-max-keys) settings; resets statistics (RESETSTAT).", run: config },
    CommandSpec { name: "command", arity: -1, flags: &["loading", "stale"], keys: (0, 0, 0), group: "server", since: "2.8.13", summary: "Returns detailed information about commands: COUNT, INFO, DOCS, LIST.", run: command },
    CommandSpec { name: "save", arity: 1, flags: &["admin", "noscript", "no_async_loading"], keys: (0, 0, 0), group: "server", since: "1.0.0", summary: "Writes the snapshot file now (blocking), when one is configured.", run: save },
    CommandSpec { name: "time", arity: 1, flags: &["loading", "stale", "fast"], keys: (0, 0, 0), group: "server", since: "2.6.0", summary: "Returns the server time.", run: time },
];

/// The sections INFO reports, in Redis's order. With no argument, `default`,
/// `all` or `everything`, all of them (Redis's further sections, such as
/// commandstats and errorstats, are not kept); a section it does not know
/// adds nothing.
const DEFAULT_SECTIONS: &[&str] =
    &["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "cluster", "keyspace"];

fn info(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let wanted: Vec<String> = args[1..].iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let everything = wanted.is_empty() || wanted.iter().any(|w| w == "all" || w == "everything" || w == "default");
    let mut out = String::new();
    for section in DEFAULT_SECTIONS {
        if everything || wanted.iter().any(|w| w == section) {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            info_section(ctx, section, &mut out);
        }
    }
    Frame::bulk(out)
}

fn info_section(ctx: &Ctx<'_>, section: &str, out: &mut String) {
    let counters = ctx.db.counters();
    match section {
        "server" => {
            out.push_str("# Server\r\n");
            let uptime = ctx.db.uptime().as_secs();
            field(out, "redis_version", &REDIS_VERSION);
            field(out, "redis_mode", &"standalone");
            field(out, "cluster_shm_version", &BROKER_VERSION);
            field(out, "os", &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH));
            field(out, "arch_bits", &(usize::BITS));
            field(out, "multiplexing_api", &"tokio");
            field(out, "process_id", &std::process::id());
            field(out, "run_id", &ctx.db.run_id());
            field(out, "tcp_port", &0);
            field(out, "uptime_in_seconds", &uptime);
            field(out, "uptime_in_days", &(uptime / 86_400));
            field(out, "executable", &"cluster-shm");
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            field(out, "connected_clients", &counters.connected_clients.load(Ordering::Relaxed));
            field(out, "blocked_clients", &ctx.ks.locks.waiting());
            field(out, "client_output_buffer_bytes", &counters.output_buffer_bytes.load(Ordering::Relaxed));
            field(out, "locks_held", &ctx.ks.locks.held());
            field(out, "maxclients", &10_000);
            field(out, "tracking_clients", &ctx.ks.tracking.client_count());
        }
        "memory" => {
            out.push_str("# Memory\r\n");
            let used = ctx.ks.used_memory();
            let rss = resident_bytes(ctx.ks.store());
            field(out, "used_memory", &used);
            field(out, "used_memory_human", &human_bytes(used as u64));
            field(out, "used_memory_rss", &rss);
            field(out, "used_memory_rss_human", &human_bytes(rss));
            field(out, "used_memory_peak", &ctx.ks.peak_memory());
            field(out, "used_memory_peak_human", &human_bytes(ctx.ks.peak_memory() as u64));
            // As Redis reports them: the RSS over the used memory, and their
            // difference. The RSS is the whole process's (a Node process), so
            // a small store shows a high ratio; an empty one shows 0.
            let ratio = if used == 0 { 0.0 } else { rss as f64 / used as f64 };
            field(out, "mem_fragmentation_ratio", &format!("{ratio:.2}"));
            field(out, "mem_fragmentation_bytes", &(rss as i64 - used as i64));
            let limits = ctx.ks.limits();
            field(out, "maxmemory", &limits.max_memory);
            field(out, "maxmemory_human", &human_bytes(limits.max_memory as u64));
            field(out, "maxmemory_policy", &limits.policy.name());
            field(out, "maxkeys", &limits.max_keys);
        }
        "persistence" => {
            out.push_str("# Persistence\r\n");
            field(out, "loading", &0);
            field(out, "rdb_changes_since_last_save", &0);
            field(out, "aof_enabled", &0);
        }
        "stats" => {
            out.push_str("# Stats\r\n");
            let stats = &ctx.ks.stats();
            field(out, "total_connections_received", &counters.total_connections_received.load(Ordering::Relaxed));
            field(out, "total_commands_processed", &counters.total_commands_processed.load(Ordering::Relaxed));
            field(out, "expired_keys", &stats.expired_keys);
            field(out, "evicted_keys", &stats.evicted_keys);
            field(out, "keyspace_hits", &stats.keyspace_hits);
            field(out, "keyspace_misses", &stats.keyspace_misses);
            field(out, "pubsub_channels", &ctx.ks.pubsub.active_channels(None).len());
            field(out, "pubsub_patterns", &ctx.ks.pubsub.pattern_count());
            field(out, "tracking_total_keys", &ctx.ks.tracking.key_count());
            field(out, "tracking_total_items", &ctx.ks.tracking.item_count());
            field(out, "tracking_total_prefixes", &0);
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            field(out, "role", &"master");
            field(out, "connected_slaves", &0);
        }
        "cpu" => {
            out.push_str("# CPU\r\n");
        }
        "modules" => {
            out.push_str("# Modules\r\n");
        }
        "cluster" => {
            out.push_str("# Cluster\r\n");
            field(out, "cluster_enabled", &0);
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            if !ctx.ks.is_empty() {
                field(out, "db0", &format!("keys={},expires={},avg_ttl=0", ctx.ks.len(), ctx.ks.volatile_len()));
            }
        }
        _ => {}
    }
}

fn field(out: &mut String, name: &str, value: &dyn std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// Resident memory of the broker's process, with the shared store counted
/// once: on Linux the process's own pages (RssAnon + RssFile) plus the
/// store's pages, wherever they were touched (a worker's writes land in the
/// store without ever touching the broker's page tables); on macOS the
/// process's resident size (the store's pages it touched itself); 0 where
/// neither can be read.
pub fn resident_bytes(store: &crate::shm::Store) -> u64 {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next().and_then(|kb| kb.parse::<u64>().ok()))
                .map(|kb| kb * 1024)
        };
        match (field("RssAnon:"), field("RssFile:"), store.resident_bytes()) {
            (Some(anon), Some(file), Some(shared)) => anon + file + shared,
            _ => std::fs::read_to_string("/proc/self/statm")
                .ok()
                .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
                .map_or(0, |pages| pages * 4096),
        }
    }
    #[cfg(target_vendor = "apple")]
    {
        let _ = store;
        let mut info = std::mem::MaybeUninit::<libc::mach_task_basic_info>::zeroed();
        let mut count = libc::MACH_TASK_BASIC_INFO_COUNT;
        // SAFETY: task_info writes at most `count` words into `info`, which
        // has room for that many; the task port is this process's own.
        #[allow(deprecated)]
        let result = unsafe {
            libc::task_info(libc::mach_task_self(), libc::MACH_TASK_BASIC_INFO, info.as_mut_ptr().cast(), &mut count)
        };
        if result != libc::KERN_SUCCESS {
            return 0;
        }
        // SAFETY: zeroed, then filled by task_info.
        unsafe { info.assume_init() }.resident_size
    }
    #[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
    {
        let _ = store;
        0
    }
}

fn config(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let sub = &args[1];
    if is(sub, "GET") {
        if args.len() < 3 {
            return Frame::error("ERR wrong number of arguments for 'config|get' command");
        }
        let config = ctx.db.config();
        let limits = ctx.ks.limits();
        let output_limit = ctx.ks.pubsub.output_limit;
        let params: [(&str, String); 16] = [
            ("save", String::new()),
            ("appendonly", "no".into()),
            ("databases", "1".into()),
            ("maxmemory", limits.max_memory.to_string()),
            ("maxmemory-policy", limits.policy.name().into()),
            ("maxkeys", limits.max_keys.to_string()),
            ("proto-max-bulk-len", config.limits.max_bulk_len.to_string()),
            ("client-query-buffer-limit", config.query_buffer_limit.to_string()),
            ("timeout", "0".into()),
            ("port", "0".into()),
            ("unixsocket", config.unixsocket.clone()),
            ("unixsocketperm", "600".into()),
            ("maxclients", "10000".into()),
            ("notify-keyspace-events", notify::format(ctx.ks.notify_flags)),
            ("client-output-buffer-limit", format!("normal 0 0 0 replica 0 0 0 pubsub {output_limit} 0 0")),
            ("tracking-table-max-keys", ctx.ks.tracking.max_keys().to_string()),
        ];
        let mut reply = Vec::new();
        for (name, value) in params {
            if args[2..].iter().any(|p| glob_match(&p.to_ascii_lowercase(), name.as_bytes())) {
                reply.push(Frame::bulk_str(name));
                reply.push(Frame::bulk(value));
            }
        }
        Frame::Array(reply)
    } else if is(sub, "RESETSTAT") && args.len() == 2 {
        ctx.ks.reset_stats();
        ctx.db.counters().total_commands_processed.store(0, Ordering::Relaxed);
        Frame::ok()
    } else if is(sub, "SET") {
        config_set(ctx, &args[2..])
    } else {
        unknown_subcommand(sub, "config")
    }
}

/// CONFIG SET name value [name value ...]: all or nothing, as in Redis 7.
fn config_set(ctx: &mut Ctx<'_>, pairs: &[Bytes]) -> Frame {
    if pairs.is_empty() || !pairs.len().is_multiple_of(2) {
        return Frame::error("ERR wrong number of arguments for 'config|set' command");
    }
    let mut limits = ctx.ks.limits();
    let mut notify_flags = ctx.ks.notify_flags;
    let mut output_limit = ctx.ks.pubsub.output_limit;
    let mut tracking_max_keys = ctx.ks.tracking.max_keys();
    let mut config = ctx.db.config();
    for pair in pairs.chunks_exact(2) {
        let (name, value) = (String::from_utf8_lossy(&pair[0]).to_ascii_lowercase(), &pair[1]);
        let invalid = |why: &str| {
            Frame::error(format!(
                "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}: '{}'",
                String::from_utf8_lossy(value)
            ))
        };
        match name.as_str() {
            "maxmemory" => match parse_memory(value) {
                Some(bytes) => limits.max_memory = bytes,
                None => return invalid("argument must be a memory value"),
            },
            "maxkeys" => match std::str::from_utf8(value).ok().and_then(|v| v.parse::<usize>().ok()) {
                Some(n) => limits.max_keys = n,
                None => return invalid("argument must be a non-negative integer"),
            },
            "maxmemory-policy" => match EvictionPolicy::parse(value) {
                Some(policy) => limits.policy = policy,
                None => return invalid("argument must be one of noeviction, allkeys-lru, volatile-ttl"),
            },
            "proto-max-bulk-len" => match parse_memory(value) {
                Some(bytes) if bytes >= 1024 => config.limits.max_bulk_len = bytes,
                _ => return invalid("argument must be a memory value of at least 1kb"),
            },
            "client-query-buffer-limit" => match parse_memory(value) {
                Some(bytes) if bytes >= 1024 * 1024 => config.query_buffer_limit = bytes,
                _ => return invalid("argument must be a memory value of at least 1mb"),
            },
            "notify-keyspace-events" => match notify::parse(value) {
                Some(flags) => notify_flags = flags,
                None => return invalid("argument(s) must be one or more of KEg$lshzxetmdnA"),
            },
            "client-output-buffer-limit" => match parse_output_limits(value) {
                Some(Some(limit)) => output_limit = limit,
                Some(None) => {}
                None => {
                    return invalid(
                        "argument must be 'class hard soft seconds' groups; only the pubsub hard limit can be set",
                    )
                }
            },
            "tracking-table-max-keys" => match std::str::from_utf8(value).ok().and_then(|v| v.parse::<i64>().ok()) {
                Some(n) if n >= 0 => tracking_max_keys = n as usize,
                Some(_) => return invalid("argument must be between 0 and 9223372036854775807 inclusive"),
                None => return invalid("argument couldn't be parsed into an integer"),
            },
            _ => return Frame::error(format!("ERR Unknown option or number of arguments for CONFIG SET - '{name}'")),
        }
    }
    ctx.ks.set_limits(limits);
    ctx.ks.notify_flags = notify_flags;
    ctx.ks.pubsub.output_limit = output_limit;
    let ks = &mut *ctx.ks;
    // A lower bound invalidates the keys past it at once.
    ks.tracking.set_max_keys(tracking_max_keys, &mut ks.pubsub);
    ctx.db.update_config(|c| {
        c.limits = config.limits;
        c.query_buffer_limit = config.query_buffer_limit;
    });
    Frame::ok()
}

/// `class hard soft seconds` groups; returns the pubsub hard limit if one is
/// given. Limits that are not enforced here (soft limits, other classes) must
/// be 0, so nothing set is silently ignored.
fn parse_output_limits(value: &[u8]) -> Option<Option<usize>> {
    let text = std::str::from_utf8(value).ok()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return None;
    }
    let mut pubsub = None;
    for group in words.chunks_exact(4) {
        let hard = parse_memory(group[1].as_bytes())?;
        let (soft, seconds) = (parse_memory(group[2].as_bytes())?, group[3].parse::<u64>().ok()?);
        match group[0].to_ascii_lowercase().as_str() {
            "pubsub" if soft == 0 && seconds == 0 => pubsub = Some(hard),
            "normal" | "replica" | "slave" if hard == 0 && soft == 0 && seconds == 0 => {}
            _ => return None,
        }
    }
    Some(pubsub)
}

/// Redis memory notation: bytes, or a number with k, kb, m, mb, g, gb.
fn parse_memory(value: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(value).ok()?.to_ascii_lowercase();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(multiplier)
}

fn save(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let Some(path) = ctx.db.config().snapshot else {
        return Frame::error("ERR no snapshot file is configured (the persist option)");
    };
    match snapshot::write(&snapshot::encode(ctx.ks, ctx.now), &path) {
        Ok(_) => Frame::ok(),
        Err(error) => Frame::error(format!("ERR snapshot failed: {error}")),
    }
}

fn time(ctx: &mut Ctx<'_>, _: &[Bytes]) -> Frame {
    let micros =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_micros()).unwrap_or(0);
    Frame::Array(vec![Frame::bulk((ctx.now / 1000).to_string()), Frame::bulk(micros.to_string())])
}

/// COMMAND, COMMAND COUNT | INFO [name ...] | DOCS [name ...] | LIST
fn command(_: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let Some(sub) = args.get(1) else {
        return Frame::Array(all_commands().map(command_info).collect());
    };
    let named = || -> Vec<Option<&'static CommandSpec>> { args[2..].iter().map(|n| lookup(n)).collect() };
    if is(sub, "COUNT") && args.len() == 2 {
        Frame::Integer(all_commands().count() as i64)
    } else if is(sub, "LIST") {
        Frame::Array(all_commands().map(|c| Frame::bulk_str(c.name)).collect())
    } else if is(sub, "INFO") {
        if args.len() == 2 {
            return Frame::Array(all_commands().map(command_info).collect());
        }
        Frame::Array(named().into_iter().map(|c| c.map_or(Frame::NullArray, command_info)).collect())
    } else if is(sub, "DOCS") {
        let specs: Vec<&CommandSpec> =
            if args.len() == 2 { all_commands().collect() } else { named().into_iter().flatten().collect() };
        let mut reply = Vec::with_capacity(specs.len() * 2);
        for spec in specs {
            reply.push(Frame::bulk_str(spec.name));
            reply.push(Frame::Array(vec![
                Frame::bulk_str("summary"),
                Frame::bulk_str(spec.summary),
                Frame::bulk_str("since"),
                Frame::bulk_str(spec.since),
                Frame::bulk_str("group"),
                Frame::bulk_str(spec.group),
            ]));
        }
        Frame::Array(reply)
    } else if is(sub, "COUNT") {
        wrong_arity("command|count")
    } else if is(sub, "HELP") {
        Frame::Array(vec![Frame::Simple("COMMAND [COUNT | INFO name... | DOCS name... | LIST]".into())])
    } else {
        unknown_subcommand(sub, "command")
    }
}

/// The ten-element command description of Redis 7.
fn command_info(spec: &CommandSpec) -> Frame {
    Frame::Array(vec![
        Frame::bulk_str(spec.name),
        Frame::Integer(spec.arity as i64),
        Frame::Array(spec.flags.iter().map(|f| Frame::Simple((*f).into())).collect()),
        Frame::Integer(spec.keys.0 as i64),
        Frame::Integer(spec.keys.1 as i64),
        Frame::Integer(spec.keys.2 as i64),
        Frame::Array(vec![Frame::Simple(format!("@{}", spec.group))]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

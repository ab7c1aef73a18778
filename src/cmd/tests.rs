//! Command semantics against a real store, through the same dispatch the
//! broker's connections use.

use bytes::Bytes;

use super::{execute, Ctx, Session};
use crate::resp::Frame;
use crate::store::{Db, MAX_PATTERN_LEN};

struct Harness {
    db: Db,
    session: Session,
    now: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness { db: Db::new(), session: Session::new(1), now: 1_000_000 }
    }

    fn run(&mut self, line: &str) -> Frame {
        let args: Vec<Bytes> = crate::resp::split_args(line.as_bytes()).expect("valid test command");
        let mut ks = self.db.lock();
        let mut ctx = Ctx::new(&self.db, &mut ks, &mut self.session, self.now);
        execute(&mut ctx, &args)
    }

    fn keyspace(&self) -> crate::store::KeyspaceGuard<'_> {
        self.db.lock()
    }
}

fn bulk(text: &str) -> Frame {
    Frame::bulk_str(text)
}

fn int(n: i64) -> Frame {
    Frame::Integer(n)
}

fn err(text: &str) -> Frame {
    Frame::error(text)
}

fn bulks(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| bulk(s)).collect())
}

#[test]
fn get_set_and_conditions() {
    let mut h = Harness::new();
    assert_eq!(h.run("GET a"), Frame::Null);
    assert_eq!(h.run("SET a 1"), Frame::ok());
    assert_eq!(h.run("get a"), bulk("1"));
    assert_eq!(h.run("SET a 2 NX"), Frame::Null);
    assert_eq!(h.run("SET b 2 XX"), Frame::Null);
    assert_eq!(h.run("SET a 3 XX GET"), bulk("1"));
    assert_eq!(h.run("SET c 1 NX GET"), Frame::Null);
    assert_eq!(h.run("SET c 2 NX GET"), bulk("1"));
    assert_eq!(h.run("GET c"), bulk("1"));
    assert_eq!(h.run("SET a 1 NX XX"), err("ERR syntax error"));
    assert_eq!(h.run("SET a 1 EX 1 PX 5"), err("ERR syntax error"));
    assert_eq!(h.run("SET a 1 EX"), err("ERR syntax error"));
    assert_eq!(h.run("SET a 1 EX x"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("SET a 1 EX 0"), err("ERR invalid expire time in 'set' command"));
    assert_eq!(h.run("SET a 1 EX 9223372036854775807"), err("ERR invalid expire time in 'set' command"));
    assert_eq!(h.run("SET a"), err("ERR wrong number of arguments for 'set' command"));
}

#[test]
fn set_with_expiry_options() {
    let mut h = Harness::new();
    h.run("SET a v PX 1500");
    assert_eq!(h.run("PTTL a"), int(1500));
    assert_eq!(h.run("TTL a"), int(2));
    h.run("SET a w KEEPTTL");
    assert_eq!(h.run("PTTL a"), int(1500));
    h.run("SET a w");
    assert_eq!(h.run("TTL a"), int(-1));
    h.run("SET a v EXAT 2000");
    assert_eq!(h.run("EXPIRETIME a"), int(2000));
    assert_eq!(h.run("SET a v PXAT 5"), Frame::ok());
    assert_eq!(h.run("EXISTS a"), int(0));
    h.run("SET a v EX 10");
    h.now += 10_000;
    assert_eq!(h.run("GET a"), Frame::Null);
    assert_eq!(h.run("TTL a"), int(-2));
}

#[test]
fn set_parses_its_options_as_redis_does() {
    let mut h = Harness::new();
    let syntax = err("ERR syntax error");
    let invalid = err("ERR invalid expire time in 'set' command");
    // An option given twice is taken; of a unit given twice, the last amount.
    assert_eq!(h.run("SET k v EX 10 ex 20"), Frame::ok());
    assert_eq!(h.run("TTL k"), int(20));
    assert_eq!(h.run("SET k v NX NX"), Frame::Null);
    assert_eq!(h.run("SET k w XX XX GET GET KEEPTTL KEEPTTL"), bulk("v"));
    assert_eq!(h.run("TTL k"), int(20));
    // Options in conflict, or incomplete.
    for line in [
        "SET k v EX 10 KEEPTTL",
        "SET k v KEEPTTL EX 10",
        "SET k v PX 10 EX 10",
        "SET k v EXAT 10 PXAT 10",
        "SET k v NX XX",
        "SET k v XX NX",
        "SET k v IFEQ v NX",
        "SET k v EX 10 EX",
        "SET k v IFEQ",
        "SET k v PERSIST",
    ] {
        assert_eq!(h.run(line), syntax, "{line}");
    }
    // The whole line parses before an amount is checked.
    assert_eq!(h.run("SET k v EX x BOGUS"), syntax);
    assert_eq!(h.run("SET k v EX 0 BOGUS"), syntax);
    assert_eq!(h.run("SET k v EX x NX XX"), syntax);
    assert_eq!(h.run("SET k v EX -5"), invalid);
    assert_eq!(h.run("SET k v PXAT 0"), invalid);
    assert_eq!(h.run("SET k v EXAT 9223372036854775807"), invalid);
    assert_eq!(h.run("GET k"), bulk("w"));
    assert_eq!(h.run("SET k v EXAT 9223372036854775"), Frame::ok());
    assert_eq!(h.run("PEXPIRETIME k"), int(9_223_372_036_854_775_000));
    assert_eq!(h.run("SET k w GET NX"), bulk("v"));
    assert_eq!(h.run("SET k w NX GET"), bulk("v"));
    assert_eq!(h.run("GET k"), bulk("v"));
}

#[test]
fn expire_family() {
    let mut h = Harness::new();
    assert_eq!(h.run("EXPIRE missing 10"), int(0));
    h.run("SET k v");
    assert_eq!(h.run("EXPIRE k 10 XX"), int(0));
    assert_eq!(h.run("EXPIRE k 10 NX"), int(1));
    assert_eq!(h.run("EXPIRE k 20 NX"), int(0));
    assert_eq!(h.run("EXPIRE k 5 GT"), int(0));
    assert_eq!(h.run("EXPIRE k 50 GT"), int(1));
    assert_eq!(h.run("PEXPIRE k 100 LT"), int(1));
    assert_eq!(h.run("PTTL k"), int(100));
    assert_eq!(h.run("PERSIST k"), int(1));
    assert_eq!(h.run("PERSIST k"), int(0));
    assert_eq!(h.run("EXPIRE k 1 NX XX"), err("ERR NX and XX, GT or LT options at the same time are not compatible"));
    assert_eq!(h.run("PEXPIREAT k 1"), int(1));
    assert_eq!(h.run("EXISTS k"), int(0));
    h.run("SET k v");
    assert_eq!(h.run("EXPIRE k -1"), int(1));
    assert_eq!(h.run("GET k"), Frame::Null);
}

#[test]
fn multi_key_commands() {
    let mut h = Harness::new();
    assert_eq!(h.run("MSET a 1 b 2 c 3"), Frame::ok());
    assert_eq!(h.run("MSET a 1 b"), err("ERR wrong number of arguments for 'mset' command"));
    assert_eq!(h.run("MGET a x c"), Frame::Array(vec![bulk("1"), Frame::Null, bulk("3")]));
    assert_eq!(h.run("EXISTS a a x"), int(2));
    assert_eq!(h.run("DBSIZE"), int(3));
    assert_eq!(h.run("DEL a x b"), int(2));
    assert_eq!(h.run("TYPE c"), Frame::Simple("string".into()));
    assert_eq!(h.run("TYPE a"), Frame::Simple("none".into()));
    assert_eq!(h.run("FLUSHDB"), Frame::ok());
    assert_eq!(h.run("DBSIZE"), int(0));
    assert_eq!(h.run("FLUSHDB LATER"), err("ERR syntax error"));
}

#[test]
fn touch_unlink_exists_count_each_mention() {
    let mut h = Harness::new();
    h.run("MSET a 1 b 2");
    assert_eq!(h.run("EXISTS a a b x a"), int(4));
    h.now += 5_000;
    assert_eq!(h.run("TOUCH a b x a"), int(3));
    assert_eq!(h.run("OBJECT IDLETIME a"), int(0));
    assert_eq!(h.run("TOUCH"), err("ERR wrong number of arguments for 'touch' command"));
    assert_eq!(h.run("UNLINK a x a"), int(1));
    assert_eq!(h.run("EXISTS a b"), int(1));
    assert_eq!(h.run("UNLINK"), err("ERR wrong number of arguments for 'unlink' command"));
    assert_eq!(h.run("TYPE b"), Frame::Simple("string".into()));
    assert_eq!(h.run("TYPE a"), Frame::Simple("none".into()));
    assert_eq!(h.run("TYPE"), err("ERR wrong number of arguments for 'type' command"));
    assert_eq!((h.run("EXPIRETIME b"), h.run("PEXPIRETIME b")), (int(-1), int(-1)));
    assert_eq!((h.run("EXPIRETIME a"), h.run("PEXPIRETIME a")), (int(-2), int(-2)));
    h.run("PEXPIRE b 1500");
    assert_eq!((h.run("EXPIRETIME b"), h.run("PEXPIRETIME b")), (int(1006), int(1_006_500)));
}

#[test]
fn rename_and_renamenx_move_the_ttl() {
    let mut h = Harness::new();
    let no_such_key = err("ERR no such key");
    h.run("SET b 2 PX 50000");
    assert_eq!(h.run("RENAME b c"), Frame::ok());
    assert_eq!((h.run("EXISTS b"), h.run("GET c"), h.run("PTTL c")), (int(0), bulk("2"), int(50_000)));
    assert_eq!(h.run("RENAME b c"), no_such_key);
    assert_eq!(h.run("RENAME zz zz"), no_such_key);
    assert_eq!(h.run("RENAME c c"), Frame::ok());
    assert_eq!(h.run("GET c"), bulk("2"));
    // The destination is replaced, its own ttl with it.
    h.run("SET d 4");
    assert_eq!(h.run("RENAME c d"), Frame::ok());
    assert_eq!((h.run("GET d"), h.run("PTTL d")), (bulk("2"), int(50_000)));
    h.run("SET p 1 PX 10");
    h.run("SET q 2");
    assert_eq!(h.run("RENAME q p"), Frame::ok());
    assert_eq!(h.run("PTTL p"), int(-1));

    assert_eq!(h.run("RENAMENX d e"), int(1));
    assert_eq!(h.run("PTTL e"), int(50_000));
    assert_eq!(h.run("RENAMENX x y"), no_such_key);
    h.run("SET f 6");
    assert_eq!(h.run("RENAMENX e f"), int(0));
    assert_eq!(h.run("RENAMENX e e"), int(0));
    assert_eq!((h.run("GET e"), h.run("GET f")), (bulk("2"), bulk("6")));
    // A key that expired is no source, and no obstacle.
    h.run("SET gone v PX 10");
    h.now += 10;
    assert_eq!(h.run("RENAME gone z"), no_such_key);
    h.run("SET gone v PX 10");
    h.now += 10;
    assert_eq!(h.run("RENAMENX f gone"), int(1));
    assert_eq!(h.run("DBSIZE"), int(3));
    // The value keeps its idle time.
    h.now += 3_000;
    assert_eq!(h.run("RENAME gone moved"), Frame::ok());
    assert_eq!(h.run("OBJECT IDLETIME moved"), int(3));
    assert_eq!(h.run("RENAME a"), err("ERR wrong number of arguments for 'rename' command"));
    assert_eq!(h.run("RENAMENX a b c"), err("ERR wrong number of arguments for 'renamenx' command"));
}

#[test]
fn copy_with_replace_and_the_one_database() {
    let mut h = Harness::new();
    h.run("SET e 2 PX 50000");
    assert_eq!(h.run("COPY e g"), int(1));
    assert_eq!((h.run("GET g"), h.run("PTTL g"), h.run("GET e")), (bulk("2"), int(50_000), bulk("2")));
    h.run("SET e 3");
    assert_eq!(h.run("COPY e g"), int(0));
    assert_eq!(h.run("COPY e g REPLACE"), int(1));
    assert_eq!((h.run("GET g"), h.run("PTTL g")), (bulk("3"), int(-1)));
    assert_eq!(h.run("COPY e g replace REPLACE"), int(1));
    assert_eq!(h.run("COPY e h DB 0"), int(1));
    assert_eq!(h.run("COPY e h DB 0 REPLACE"), int(1));
    assert_eq!(h.run("COPY nokey h7"), int(0));
    assert_eq!(h.run("EXISTS h7"), int(0));
    let out_of_range = err("ERR DB index is out of range");
    assert_eq!(h.run("COPY e h2 DB 1"), out_of_range);
    assert_eq!(h.run("COPY e h2 DB -1"), out_of_range);
    assert_eq!(h.run("COPY e h2 DB 1 FOO"), out_of_range);
    assert_eq!(h.run("COPY e e DB 1"), out_of_range);
    assert_eq!(
        h.run("COPY e h2 DB 4294967296"),
        err("ERR value is out of range, value must between -2147483648 and 2147483647")
    );
    assert_eq!(h.run("COPY e h2 DB x"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("COPY e h2 DB 0 DB x"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("COPY e h2 DB"), err("ERR syntax error"));
    assert_eq!(h.run("COPY e h2 FOO DB 0"), err("ERR syntax error"));
    assert_eq!(h.run("COPY e e"), err("ERR source and destination objects are the same"));
    assert_eq!(h.run("COPY e e REPLACE"), err("ERR source and destination objects are the same"));
    assert_eq!(h.run("COPY e"), err("ERR wrong number of arguments for 'copy' command"));
    assert_eq!(h.run("EXISTS h2"), int(0));
}

#[test]
fn randomkey_and_object() {
    let mut h = Harness::new();
    assert_eq!(h.run("RANDOMKEY"), Frame::Null);
    h.run("SET only v");
    assert_eq!(h.run("RANDOMKEY"), bulk("only"));
    h.run("SET gone v PX 10");
    h.run("DEL only");
    h.now += 10;
    assert_eq!(h.run("RANDOMKEY"), Frame::Null);
    assert_eq!(h.run("RANDOMKEY x"), err("ERR wrong number of arguments for 'randomkey' command"));

    // Redis's choice for a value it is given: int, embstr up to 44 bytes, raw.
    for (value, encoding) in [
        ("12345", "int"),
        ("-12345", "int"),
        ("0", "int"),
        ("9223372036854775807", "int"),
        ("-9223372036854775808", "int"),
        ("9223372036854775808", "embstr"),
        ("012", "embstr"),
        ("+1", "embstr"),
        ("-0", "embstr"),
        ("\" 1\"", "embstr"),
        ("1.5", "embstr"),
        ("hello", "embstr"),
        ("\"\"", "embstr"),
        ("x".repeat(44).as_str(), "embstr"),
        ("1".repeat(45).as_str(), "raw"),
    ] {
        h.run(&format!("SET k {value}"));
        assert_eq!(h.run("OBJECT ENCODING k"), bulk(encoding), "{value}");
    }
    assert_eq!(h.run("OBJECT REFCOUNT k"), int(1));
    h.run("SET idle v");
    h.now += 5_500;
    // OBJECT looks without touching.
    assert_eq!(h.run("OBJECT ENCODING idle"), bulk("embstr"));
    assert_eq!(h.run("OBJECT IDLETIME idle"), int(5));
    h.run("GET idle");
    assert_eq!(h.run("OBJECT IDLETIME idle"), int(0));
    assert_eq!(
        h.run("OBJECT FREQ idle"),
        err("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")
    );
    for sub in ["ENCODING", "REFCOUNT", "IDLETIME", "FREQ"] {
        assert_eq!(h.run(&format!("OBJECT {sub} nokey")), Frame::Null, "{sub}");
        let arity = err(&format!("ERR wrong number of arguments for 'object|{}' command", sub.to_lowercase()));
        assert_eq!(h.run(&format!("OBJECT {sub}")), arity);
        assert_eq!(h.run(&format!("object {} idle extra", sub.to_lowercase())), arity);
    }
    let Frame::Array(help) = h.run("OBJECT HELP") else { panic!() };
    assert_eq!(help.len(), 15);
    assert_eq!(help[0], Frame::Simple("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".into()));
    assert_eq!(h.run("OBJECT help x"), err("ERR wrong number of arguments for 'object|help' command"));
    assert_eq!(h.run("OBJECT FOO idle"), err("ERR unknown subcommand 'FOO'. Try OBJECT HELP."));
    assert_eq!(h.run("OBJECT"), err("ERR wrong number of arguments for 'object' command"));
}

#[test]
fn keys_and_scan() {
    let mut h = Harness::new();
    for i in 0..25 {
        h.run(&format!("SET user:{i} x"));
        h.run(&format!("SET post:{i} x"));
    }
    let Frame::Array(keys) = h.run("KEYS user:1*") else { panic!("KEYS must return an array") };
    assert_eq!(keys.len(), 11); // user:1, user:10..19
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = "0".to_string();
    loop {
        let Frame::Array(reply) = h.run(&format!("SCAN {cursor} MATCH user:* COUNT 7")) else { panic!() };
        let (Frame::Bulk(next), Frame::Array(found)) = (&reply[0], &reply[1]) else { panic!() };
        for key in found {
            let Frame::Bulk(key) = key else { panic!() };
            assert!(key.starts_with(b"user:"));
            seen.insert(key.clone());
        }
        cursor = String::from_utf8(next.to_vec()).unwrap();
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(h.run("SCAN x"), err("ERR invalid cursor"));
    assert_eq!(h.run("SCAN 0 COUNT 0"), err("ERR syntax error"));
    let Frame::Array(reply) = h.run("SCAN 0 TYPE hash COUNT 1000") else { panic!() };
    assert_eq!(reply, vec![bulk("0"), Frame::Array(vec![])]);
    let Frame::Array(reply) = h.run("SCAN 0 MATCH post:1* TYPE STRING COUNT 1000") else { panic!() };
    let Frame::Array(found) = &reply[1] else { panic!() };
    let mut found: Vec<&Frame> = found.iter().collect();
    found.sort_by_key(|frame| format!("{frame:?}"));
    let mut expected: Vec<Frame> = std::iter::once(1).chain(10..20).map(|i| bulk(&format!("post:{i}"))).collect();
    expected.sort_by_key(|frame| format!("{frame:?}"));
    assert_eq!((&reply[0], found), (&bulk("0"), expected.iter().collect::<Vec<_>>()));
}

#[test]
fn patterns_longer_than_the_limit_are_refused_where_they_would_be_matched() {
    let mut h = Harness::new();
    h.run("SET a x");
    let at_limit = format!("{}*", "?".repeat(MAX_PATTERN_LEN - 1));
    let over = format!("{}*", "?".repeat(MAX_PATTERN_LEN));
    let refused = err(&format!("ERR pattern is longer than {MAX_PATTERN_LEN} bytes"));
    assert_eq!(h.run(&format!("KEYS {at_limit}")), Frame::Array(vec![]));
    assert_eq!(h.run(&format!("KEYS {over}")), refused);
    assert_eq!(h.run(&format!("SCAN 0 MATCH {at_limit}")), Frame::Array(vec![bulk("0"), Frame::Array(vec![])]));
    assert_eq!(h.run(&format!("SCAN 0 MATCH {over}")), refused);
    assert_eq!(h.run(&format!("PUBSUB CHANNELS {over}")), refused);
    let mut clients = Clients::new();
    assert_eq!(clients.run(SUB, &format!("PSUBSCRIBE short:* {over}")), refused);
    // Nothing of a refused PSUBSCRIBE is kept.
    assert_eq!(clients.run(WRITER, "PUBSUB NUMPAT"), int(0));
    assert!(matches!(clients.run(SUB, &format!("PSUBSCRIBE {at_limit}")), Frame::Many(_)));
}

#[test]
fn numbers_out_of_range_get_redis_errors() {
    let mut h = Harness::new();
    h.run("SET k v");
    let not_an_integer = err("ERR value is not an integer or out of range");
    // 1e20 and 2^63 written out: past i64, or past it once added to now.
    for amount in ["100000000000000000000", "1e20"] {
        assert_eq!(h.run(&format!("SET k v PX {amount}")), not_an_integer);
        assert_eq!(h.run(&format!("PEXPIRE k {amount}")), not_an_integer);
        assert_eq!(h.run(&format!("SHM.LOCK l t {amount}")), not_an_integer);
        assert_eq!(h.run(&format!("SHM.LOCK l t 10 WAIT {amount}")), not_an_integer);
        assert_eq!(h.run(&format!("SHM.EXTEND l t {amount}")), not_an_integer);
        assert_eq!(h.run(&format!("SHM.RATELIMIT r 1 {amount}")), not_an_integer);
        assert_eq!(h.run(&format!("SHM.RATELIMIT r {amount} 10")), not_an_integer);
    }
    assert_eq!(h.run("SET k v PX 9223372036854775807"), err("ERR invalid expire time in 'set' command"));
    assert_eq!(h.run("PEXPIRE k 9223372036854775807"), err("ERR invalid expire time in 'pexpire' command"));
    assert_eq!(h.run("SHM.RATELIMIT r 1 9223372036854775807"), err("ERR points and window must be positive integers"));
    // The largest ttl the JS API sends (2^53 - 1 ms) is taken.
    assert_eq!(h.run("SET k v PX 9007199254740991"), Frame::ok());
    assert_eq!(h.run("PTTL k"), int(9_007_199_254_740_991));
    assert_eq!(h.run("PEXPIRE k 9007199254740991"), int(1));
    assert_eq!(h.run("SHM.LOCK l t 9007199254740991"), int(1));
    assert_eq!(h.run("SHM.EXTEND l t 9007199254740991"), int(1));
    assert!(matches!(h.run("SHM.RATELIMIT r 9007199254740991 9007199254740991"), Frame::Array(_)));
}

#[test]
fn connection_commands() {
    let mut h = Harness::new();
    assert_eq!(h.run("PING"), Frame::Simple("PONG".into()));
    assert_eq!(h.run("ping hi"), bulk("hi"));
    assert_eq!(h.run("ECHO x"), bulk("x"));
    assert_eq!(h.run("SELECT 0"), Frame::ok());
    assert_eq!(h.run("SELECT 1"), err("ERR DB index is out of range"));
    assert_eq!(h.run("SELECT -1"), err("ERR DB index is out of range"));
    assert_eq!(h.run("SELECT x"), err("ERR value is not an integer or out of range"));
    assert_eq!(
        h.run("SELECT 4294967296"),
        err("ERR value is out of range, value must between -2147483648 and 2147483647")
    );
    assert_eq!(h.run("SELECT 0 1"), err("ERR wrong number of arguments for 'select' command"));
    assert_eq!(h.run("HELLO 3"), err("NOPROTO unsupported protocol version"));
    assert_eq!(h.run("HELLO x"), err("ERR Protocol version is not an integer or out of range"));
    let Frame::Array(hello) = h.run("HELLO 2 SETNAME app") else { panic!() };
    assert_eq!(hello[4..6], [bulk("proto"), int(2)]);
    assert_eq!(h.run("CLIENT GETNAME"), bulk("app"));
    assert_eq!(
        h.run("CLIENT SETNAME \"a b\""),
        err("ERR Client names cannot contain spaces, newlines or special characters.")
    );
    assert_eq!(h.run("CLIENT ID"), int(1));
    assert_eq!(h.run("CLIENT SETINFO LIB-NAME ioredis"), Frame::ok());
    assert_eq!(h.run("CLIENT SETINFO LIB-COLOR x"), err("ERR Unrecognized option 'LIB-COLOR'"));
    assert_eq!(h.run("CLIENT NOPE"), err("ERR unknown subcommand 'NOPE'. Try CLIENT HELP."));
    assert_eq!(h.run("QUIT"), Frame::ok());
    assert!(h.session.closing);
}

#[test]
fn unknown_commands_and_arity() {
    let mut h = Harness::new();
    assert_eq!(h.run("NOPE a b"), err("ERR unknown command 'NOPE', with args beginning with: 'a' 'b' "));
    assert_eq!(h.run("GET"), err("ERR wrong number of arguments for 'get' command"));
    assert_eq!(h.run("GET a b"), err("ERR wrong number of arguments for 'get' command"));
}

#[test]
fn info_memory_reports_fragmentation_as_redis_does() {
    let mut h = Harness::new();
    let field = |info: &str, name: &str| -> String {
        let line = info.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap_or_else(|| panic!("no {name}"));
        line[name.len() + 1..].to_string()
    };
    let memory = |h: &mut Harness| {
        let Frame::Bulk(info) = h.run("INFO memory") else { panic!() };
        String::from_utf8(info.to_vec()).unwrap()
    };
    let empty = memory(&mut h);
    assert_eq!(field(&empty, "mem_fragmentation_ratio"), "0.00");
    h.run("SET a 1");
    let info = memory(&mut h);
    let (used, rss): (i64, i64) =
        (field(&info, "used_memory").parse().unwrap(), field(&info, "used_memory_rss").parse().unwrap());
    assert!(used > 0 && rss > 0, "{info}");
    assert_eq!(field(&info, "mem_fragmentation_ratio"), format!("{:.2}", rss as f64 / used as f64));
    assert_eq!(field(&info, "mem_fragmentation_bytes"), (rss - used).to_string());
    assert!(field(&info, "used_memory_rss_human").ends_with(['B', 'K', 'M', 'G']), "{info}");
}

#[test]
fn server_commands() {
    let mut h = Harness::new();
    h.run("SET a 1 EX 100");
    h.run("GET a");
    h.run("GET b");
    let Frame::Bulk(info) = h.run("INFO") else { panic!() };
    let info = String::from_utf8(info.to_vec()).unwrap();
    for line in [
        "redis_version:7.0.15",
        "arch_bits:64",
        "cluster_enabled:0",
        "loading:0",
        "keyspace_hits:1",
        "keyspace_misses:1",
        "db0:keys=1,expires=1",
    ] {
        assert!(info.contains(line), "INFO lacks {line}:\n{info}");
    }
    assert!(info.contains("cluster_shm_version:"));
    let Frame::Bulk(server) = h.run("INFO server") else { panic!() };
    assert!(!String::from_utf8_lossy(&server).contains("# Keyspace"));
    assert_eq!(h.run("CONFIG GET save"), bulks(&["save", ""]));
    assert_eq!(h.run("CONFIG GET appendonly"), bulks(&["appendonly", "no"]));
    assert_eq!(h.run("CONFIG GET nothing*"), Frame::Array(vec![]));
    let Frame::Integer(count) = h.run("COMMAND COUNT") else { panic!() };
    let Frame::Array(all) = h.run("COMMAND") else { panic!() };
    assert_eq!(all.len() as i64, count);
    let Frame::Array(docs) = h.run("COMMAND DOCS get") else { panic!() };
    assert_eq!(docs[0], bulk("get"));
    assert_eq!(h.run("COMMAND INFO nope"), Frame::Array(vec![Frame::NullArray]));
}

#[test]
fn info_reports_the_sections_asked_for_in_redis_order() {
    let mut h = Harness::new();
    let headers = |h: &mut Harness, line: &str| -> Vec<String> {
        let Frame::Bulk(info) = h.run(line) else { panic!("{line}") };
        String::from_utf8_lossy(&info).lines().filter(|l| l.starts_with('#')).map(str::to_string).collect()
    };
    let all = [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Modules",
        "# Cluster",
        "# Keyspace",
    ];
    for line in ["INFO", "INFO default", "INFO all", "INFO EVERYTHING", "INFO default keyspace", "INFO server all"] {
        assert_eq!(headers(&mut h, line), all, "{line}");
    }
    assert_eq!(headers(&mut h, "INFO keyspace memory"), ["# Memory", "# Keyspace"]);
    assert_eq!(headers(&mut h, "INFO server nosuch server"), ["# Server"]);
    // Exact bytes: sections apart by a blank line; a section known to
    // Redis but not kept here, or unknown, adds nothing.
    assert_eq!(h.run("INFO KEYSPACE"), bulk("# Keyspace\r\n"));
    assert_eq!(h.run("INFO modules cluster"), bulk("# Modules\r\n\r\n# Cluster\r\ncluster_enabled:0\r\n"));
    assert_eq!(h.run("INFO nosuch"), bulk(""));
    assert_eq!(h.run("INFO commandstats errorstats"), bulk(""));
    h.run("SET a 1");
    assert_eq!(h.run("INFO keyspace"), bulk("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"));
}

#[test]
fn stored_values_do_not_pin_the_read_buffer() {
    let mut h = Harness::new();
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    let args = vec![Bytes::from_static(b"SET"), big.slice(0..3), big.slice(3..10)];
    {
        let mut ks = h.db.lock();
        let mut ctx = Ctx::new(&h.db, &mut ks, &mut h.session, 0);
        execute(&mut ctx, &args);
    }
    drop(args);
    // The only remaining handle on the 1 MiB buffer is ours.
    assert!(big.is_unique());
    assert_eq!(h.keyspace().len(), 1);
}

#[test]
fn shm_incrby_refuses_a_result_past_2_pow_53_and_changes_nothing() {
    let mut h = Harness::new();
    let refused = err("ERR increment or decrement would pass 2^53 - 1 either way, beyond which a JavaScript number does not hold every integer");
    h.run("SET c 9007199254740990 PX 5000");
    assert_eq!(h.run("SHM.INCRBY c 1"), int(9_007_199_254_740_991));
    assert_eq!(h.run("SHM.INCRBY c 1"), refused);
    assert_eq!(h.run("GET c"), bulk("9007199254740991"));
    assert_eq!(h.run("PTTL c"), int(5000));
    assert_eq!(h.run("SHM.INCRBY c -18014398509481982"), int(-9_007_199_254_740_991));
    assert_eq!(h.run("SHM.INCRBY c -1"), refused);
    assert_eq!(h.run("GET c"), bulk("-9007199254740991"));
    assert_eq!(h.run("SHM.INCRBY fresh 7"), int(7));
    // Past 2^53 already (written by another client): only a step back into range is taken.
    h.run("SET big 9007199254740993");
    assert_eq!(h.run("SHM.INCRBY big 1"), refused);
    assert_eq!(h.run("SHM.INCRBY big -2"), int(9_007_199_254_740_991));
    // INCRBY keeps Redis's whole 64-bit range, and its errors stay.
    assert_eq!(h.run("INCRBY c -1"), int(-9_007_199_254_740_992));
    assert_eq!(h.run("SHM.INCRBY text 1.5"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("SHM.INCRBY c"), err("ERR wrong number of arguments for 'shm.incrby' command"));
}

#[test]
fn counters() {
    let mut h = Harness::new();
    assert_eq!(h.run("INCR n"), int(1));
    assert_eq!(h.run("INCRBY n 41"), int(42));
    assert_eq!(h.run("DECR n"), int(41));
    assert_eq!(h.run("DECRBY n -9"), int(50));
    assert_eq!(h.run("GET n"), bulk("50"));
    h.run("SET n 9223372036854775807");
    assert_eq!(h.run("INCR n"), err("ERR increment or decrement would overflow"));
    assert_eq!(h.run("DECRBY n -9223372036854775808"), err("ERR decrement would overflow"));
    h.run("SET s abc");
    assert_eq!(h.run("INCR s"), err("ERR value is not an integer or out of range"));
    h.run("SET s \" 1\"");
    assert_eq!(h.run("INCR s"), err("ERR value is not an integer or out of range"));
    h.run("SET t 5 PX 1000");
    h.run("INCR t");
    assert_eq!(h.run("PTTL t"), int(1000));
    assert_eq!(h.run("INCRBYFLOAT f 10.5"), bulk("10.5"));
    assert_eq!(h.run("INCRBYFLOAT f 0.1"), bulk("10.6"));
    assert_eq!(h.run("INCRBYFLOAT f -10.6"), bulk("0"));
    assert_eq!(h.run("INCRBYFLOAT f 1e3"), bulk("1000"));
    assert_eq!(h.run("INCRBYFLOAT f x"), err("ERR value is not a valid float"));
    assert_eq!(h.run("INCRBYFLOAT f 1e308"), bulk(&format!("{}", 1e308 + 1000.0)));
    assert_eq!(h.run("INCRBYFLOAT f 1e308"), err("ERR increment would produce NaN or Infinity"));
}

#[test]
fn conditional_writes() {
    let mut h = Harness::new();
    assert_eq!(h.run("SET k v1 IFEQ v0"), Frame::Null);
    assert_eq!(h.run("EXISTS k"), int(0));
    h.run("SET k v1");
    assert_eq!(h.run("SET k v2 IFEQ nope"), Frame::Null);
    assert_eq!(h.run("SET k v2 IFEQ v1"), Frame::ok());
    assert_eq!(h.run("SET k v3 IFEQ v2 GET"), bulk("v2"));
    assert_eq!(h.run("SET k v4 IFNE v3"), Frame::Null);
    assert_eq!(h.run("SET k v4 IFNE x"), Frame::ok());
    assert_eq!(h.run("SET k v5 NX IFEQ v4"), err("ERR syntax error"));
    assert_eq!(h.run("DELEX k IFEQ nope"), int(0));
    assert_eq!(h.run("DELEX k IFEQ v4"), int(1));
    assert_eq!(h.run("DELEX k"), int(0));
    h.run("SET g old");
    assert_eq!(h.run("GETSET g new"), bulk("old"));
    assert_eq!(h.run("GETDEL g"), bulk("new"));
    assert_eq!(h.run("GETDEL g"), Frame::Null);
}

#[test]
fn setnx_setex_psetex_msetnx() {
    let mut h = Harness::new();
    assert_eq!(h.run("SETNX x 1"), int(1));
    assert_eq!(h.run("SETNX x 2"), int(0));
    assert_eq!(h.run("GET x"), bulk("1"));
    assert_eq!(h.run("SETNX x"), err("ERR wrong number of arguments for 'setnx' command"));
    assert_eq!(h.run("SETNX x 2 3"), err("ERR wrong number of arguments for 'setnx' command"));
    // SETNX on an expired key writes it, persistent.
    h.run("SET t v PX 10");
    h.now += 10;
    assert_eq!(h.run("SETNX t w"), int(1));
    assert_eq!(h.run("TTL t"), int(-1));

    assert_eq!(h.run("SETEX y 10 v"), Frame::ok());
    assert_eq!(h.run("PTTL y"), int(10_000));
    h.run("SET p v EX 100");
    assert_eq!(h.run("PSETEX p 1500 w"), Frame::ok());
    assert_eq!((h.run("GET p"), h.run("PTTL p")), (bulk("w"), int(1500)));
    for (line, command) in [
        ("SETEX y 0 v", "setex"),
        ("SETEX y -1 v", "setex"),
        ("SETEX y 9223372036854775807 v", "setex"),
        ("SETEX y 9223372036854775 v", "setex"),
        ("PSETEX y 0 v", "psetex"),
        ("PSETEX y -5 v", "psetex"),
        ("PSETEX y 9223372036854775806 v", "psetex"),
    ] {
        assert_eq!(h.run(line), err(&format!("ERR invalid expire time in '{command}' command")), "{line}");
    }
    assert_eq!(h.run("SETEX y x v"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("SETEX y 9223372036854 v"), Frame::ok());
    assert_eq!(h.run("SETEX y 10"), err("ERR wrong number of arguments for 'setex' command"));
    assert_eq!(h.run("PSETEX y 10 v w"), err("ERR wrong number of arguments for 'psetex' command"));
    // A refused amount leaves the key as it was.
    assert_eq!(h.run("GET p"), bulk("w"));

    assert_eq!(h.run("MSETNX a 1 b 2"), int(1));
    assert_eq!(h.run("MSETNX a 9 c 3"), int(0));
    assert_eq!(h.run("MGET a b c"), Frame::Array(vec![bulk("1"), bulk("2"), Frame::Null]));
    assert_eq!(h.run("MSETNX c 3 c 4"), int(1));
    assert_eq!(h.run("GET c"), bulk("4"));
    assert_eq!(h.run("MSETNX a"), err("ERR wrong number of arguments for 'msetnx' command"));
    assert_eq!(h.run("MSETNX d 1 e"), err("ERR wrong number of arguments for 'msetnx' command"));
    assert_eq!(h.run("EXISTS d"), int(0));
}

#[test]
fn getex_reads_and_changes_the_ttl() {
    let mut h = Harness::new();
    assert_eq!(h.run("GETEX nokey"), Frame::Null);
    // A missing key is nil before its amount is looked at; not before the syntax is.
    assert_eq!(h.run("GETEX nokey EX 0"), Frame::Null);
    assert_eq!(h.run("GETEX nokey EX x"), Frame::Null);
    assert_eq!(h.run("GETEX nokey BOGUS"), err("ERR syntax error"));
    assert_eq!(h.run("GETEX nokey EX"), err("ERR syntax error"));
    assert_eq!(h.run("GETEX"), err("ERR wrong number of arguments for 'getex' command"));
    h.run("SET k v");
    assert_eq!(h.run("GETEX k"), bulk("v"));
    assert_eq!(h.run("TTL k"), int(-1));
    assert_eq!(h.run("GETEX k EX 100"), bulk("v"));
    assert_eq!(h.run("TTL k"), int(100));
    assert_eq!(h.run("GETEX k PX 5000"), bulk("v"));
    assert_eq!(h.run("PTTL k"), int(5000));
    assert_eq!(h.run("GETEX k EXAT 9999999999"), bulk("v"));
    assert_eq!(h.run("EXPIRETIME k"), int(9_999_999_999));
    assert_eq!(h.run("GETEX k PXAT 5000000"), bulk("v"));
    assert_eq!(h.run("PEXPIRETIME k"), int(5_000_000));
    assert_eq!(h.run("GETEX k"), bulk("v"));
    assert_eq!(h.run("PEXPIRETIME k"), int(5_000_000));
    assert_eq!(h.run("GETEX k PERSIST"), bulk("v"));
    assert_eq!(h.run("TTL k"), int(-1));
    assert_eq!(h.run("GETEX k PERSIST PERSIST"), bulk("v"));
    assert_eq!(h.run("GETEX k EX 10 EX 20"), bulk("v"));
    assert_eq!(h.run("TTL k"), int(20));
    let invalid = err("ERR invalid expire time in 'getex' command");
    assert_eq!(h.run("GETEX k EX 0"), invalid);
    assert_eq!(h.run("GETEX k PX -1"), invalid);
    assert_eq!(h.run("GETEX k EX 9223372036854775807"), invalid);
    assert_eq!(h.run("GETEX k EX x"), err("ERR value is not an integer or out of range"));
    for line in
        ["GETEX k PX 10 EX 10", "GETEX k PERSIST EX 10", "GETEX k EX 10 PERSIST", "GETEX k KEEPTTL", "GETEX k GET"]
    {
        assert_eq!(h.run(line), err("ERR syntax error"), "{line}");
    }
    assert_eq!(h.run("TTL k"), int(20));
    // A deadline already passed deletes the key, after reading it.
    assert_eq!(h.run("GETEX k PXAT 1"), bulk("v"));
    assert_eq!(h.run("EXISTS k"), int(0));
    h.run("SET k v");
    assert_eq!(h.run(&format!("GETEX k EXAT {}", h.now / 1000)), bulk("v"));
    assert_eq!(h.run("EXISTS k"), int(0));
}

#[test]
fn append_getrange_setrange() {
    let mut h = Harness::new();
    assert_eq!(h.run("APPEND k abc"), int(3));
    assert_eq!(h.run("APPEND k def"), int(6));
    assert_eq!(h.run("APPEND k \"\""), int(6));
    assert_eq!(h.run("GET k"), bulk("abcdef"));
    h.run("SET n 10 PX 5000");
    assert_eq!(h.run("APPEND n 5"), int(3));
    assert_eq!((h.run("GET n"), h.run("PTTL n")), (bulk("105"), int(5000)));
    assert_eq!(h.run("APPEND k"), err("ERR wrong number of arguments for 'append' command"));
    assert_eq!(h.run("APPEND k v w"), err("ERR wrong number of arguments for 'append' command"));

    for (range, expected) in [
        ("0 2", "abc"),
        ("-3 -1", "def"),
        ("2 1", ""),
        ("-100 100", "abcdef"),
        ("10 20", ""),
        ("0 -100", "a"),
        ("-1 -100", ""),
        ("5 5", "f"),
        ("6 6", ""),
        ("0 9223372036854775807", "abcdef"),
        ("-9223372036854775808 -1", "abcdef"),
    ] {
        assert_eq!(h.run(&format!("GETRANGE k {range}")), bulk(expected), "{range}");
    }
    assert_eq!(h.run("SUBSTR k 1 -1"), bulk("bcdef"));
    assert_eq!(h.run("GETRANGE nokey 0 -1"), bulk(""));
    h.run("SET empty \"\"");
    assert_eq!(h.run("GETRANGE empty 0 -1"), bulk(""));
    assert_eq!(h.run("GETRANGE k a 1"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("GETRANGE nokey 0 b"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("GETRANGE k 0"), err("ERR wrong number of arguments for 'getrange' command"));

    // Writing nothing changes nothing, and creates nothing.
    assert_eq!(h.run("SETRANGE s 5 \"\""), int(0));
    assert_eq!(h.run("EXISTS s"), int(0));
    assert_eq!(h.run("SETRANGE s 3 ab"), int(5));
    assert_eq!(h.run("GET s"), bulk("\0\0\0ab"));
    assert_eq!(h.run("SETRANGE s 1 XYZW"), int(5));
    assert_eq!(h.run("GET s"), bulk("\0XYZW"));
    assert_eq!(h.run("SETRANGE s 100 \"\""), int(5));
    assert_eq!(h.run("STRLEN s"), int(5));
    h.run("SET e 1 PX 100000");
    assert_eq!(h.run("SETRANGE e 2 z"), int(3));
    assert_eq!((h.run("GET e"), h.run("PTTL e")), (bulk("1\0z"), int(100_000)));
    assert_eq!(h.run("SETRANGE s x ab"), err("ERR value is not an integer or out of range"));
    assert_eq!(h.run("SETRANGE s -1 ab"), err("ERR offset is out of range"));
    assert_eq!(h.run("SETRANGE s 0"), err("ERR wrong number of arguments for 'setrange' command"));

    // No string grows past proto-max-bulk-len.
    let too_long = err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    assert_eq!(h.run("CONFIG SET proto-max-bulk-len 1kb"), Frame::ok());
    assert_eq!(h.run("SETRANGE big 1023 x"), int(1024));
    assert_eq!(h.run("SETRANGE big 1024 x"), too_long);
    assert_eq!(h.run("SETRANGE big 9223372036854775807 x"), too_long);
    assert_eq!(h.run("SETRANGE big 1024 \"\""), int(1024));
    assert_eq!(h.run("APPEND big y"), too_long);
    assert_eq!(h.run("SETRANGE new 1024 x"), too_long);
    assert_eq!(h.run("EXISTS new"), int(0));
    assert_eq!(h.run("STRLEN big"), int(1024));
}

#[test]
fn transactions_run_atomically_and_watch_detects_changes() {
    let mut h = Harness::new();
    assert_eq!(h.run("EXEC"), err("ERR EXEC without MULTI"));
    assert_eq!(h.run("MULTI"), Frame::ok());
    assert_eq!(h.run("MULTI"), err("ERR MULTI calls can not be nested"));
    assert_eq!(h.run("SET a 1"), Frame::Simple("QUEUED".into()));
    assert_eq!(h.run("INCR a"), Frame::Simple("QUEUED".into()));
    assert_eq!(h.run("WATCH a"), err("ERR WATCH inside MULTI is not allowed"));
    assert_eq!(h.run("EXEC"), Frame::Array(vec![Frame::ok(), int(2)]));

    // A queueing error aborts the transaction.
    h.run("MULTI");
    h.run("SET a 5");
    assert_eq!(h.run("GET"), err("ERR wrong number of arguments for 'get' command"));
    assert_eq!(h.run("EXEC"), err("EXECABORT Transaction discarded because of previous errors."));
    assert_eq!(h.run("GET a"), bulk("2"));

    // Runtime errors do not abort: each command has its own reply.
    h.run("MULTI");
    h.run("INCR a");
    h.run("INCRBYFLOAT a x");
    assert_eq!(h.run("EXEC"), Frame::Array(vec![int(3), err("ERR value is not a valid float")]));

    // WATCH: a change by anyone (here another session) makes EXEC return nil.
    assert_eq!(h.run("WATCH a missing"), Frame::ok());
    {
        let mut other = Session::new(2);
        let mut ks = h.db.lock();
        let mut ctx = Ctx::new(&h.db, &mut ks, &mut other, h.now);
        execute(&mut ctx, &[Bytes::from_static(b"SET"), Bytes::from_static(b"a"), Bytes::from_static(b"9")]);
    }
    h.run("MULTI");
    h.run("SET a 100");
    assert_eq!(h.run("EXEC"), Frame::NullArray);
    assert_eq!(h.run("GET a"), bulk("9"));
    // EXEC unwatched everything: the next transaction goes through.
    h.run("MULTI");
    h.run("SET a 100");
    assert_eq!(h.run("EXEC"), Frame::Array(vec![Frame::ok()]));
    // An unchanged watched key lets EXEC run; a key that expired counts as changed.
    h.run("SET t x PX 10");
    h.run("WATCH a t");
    h.now += 20;
    h.run("MULTI");
    h.run("GET a");
    assert_eq!(h.run("EXEC"), Frame::NullArray);
    h.run("WATCH a");
    assert_eq!(h.run("DISCARD"), err("ERR DISCARD without MULTI"));
    h.run("MULTI");
    assert_eq!(h.run("DISCARD"), Frame::ok());
    assert!(h.session.watched.is_empty());
}

#[test]
fn memory_bounds_evict_or_refuse() {
    let mut h = Harness::new();
    assert_eq!(h.run("CONFIG SET maxkeys 10 maxmemory-policy noeviction"), Frame::ok());
    for i in 0..10 {
        assert_eq!(h.run(&format!("SET k{i} v")), Frame::ok());
    }
    assert_eq!(h.run("SET k10 v"), err("OOM command not allowed when the number of keys >= 'maxkeys'."));
    // Overwriting needs no new slot; reads and deletes always work.
    assert_eq!(h.run("SET k3 w"), Frame::ok());
    assert_eq!(h.run("GET k3"), bulk("w"));
    assert_eq!(h.run("DEL k3"), int(1));
    assert_eq!(h.run("SET k10 v"), Frame::ok());

    assert_eq!(h.run("CONFIG SET maxmemory-policy allkeys-lru"), Frame::ok());
    // Touch k4..k8 later than the rest: they are the most recently used.
    h.now += 10;
    for i in 4..9 {
        h.run(&format!("GET k{i}"));
    }
    h.now += 10;
    for i in 100..105 {
        assert_eq!(h.run(&format!("SET k{i} v")), Frame::ok());
    }
    assert_eq!(h.run("DBSIZE"), int(10));
    for i in 4..9 {
        assert_eq!(h.run(&format!("EXISTS k{i}")), int(1), "recently used k{i} was evicted");
    }
    for i in [0, 1, 2, 9, 10] {
        assert_eq!(h.run(&format!("EXISTS k{i}")), int(0), "least recently used k{i} was kept");
    }
    let Frame::Bulk(info) = h.run("INFO stats") else { panic!() };
    assert!(String::from_utf8_lossy(&info).contains("evicted_keys:5"));

    assert_eq!(h.run("FLUSHDB"), Frame::ok());
    assert_eq!(h.run("CONFIG SET maxkeys 3 maxmemory-policy volatile-ttl"), Frame::ok());
    h.run("SET p1 v");
    h.run("SET soon v PX 100");
    h.run("SET later v PX 5000");
    assert_eq!(h.run("SET new v"), Frame::ok());
    assert_eq!(h.run("EXISTS soon"), int(0));
    assert_eq!(h.run("EXISTS later"), int(1));
    h.run("SET new2 v");
    assert_eq!(h.run("EXISTS later"), int(0));
    // Nothing volatile left to evict: refused.
    assert_eq!(h.run("SET new3 v"), err("OOM command not allowed when the number of keys >= 'maxkeys'."));

    assert_eq!(h.run("CONFIG SET maxkeys 0 maxmemory 2kb maxmemory-policy allkeys-lru"), Frame::ok());
    for i in 0..200 {
        assert_eq!(h.run(&format!("SET m{i} {}", "x".repeat(50))), Frame::ok());
        assert!(h.keyspace().used_memory() <= 2048);
    }
    assert_eq!(h.run("CONFIG GET maxmemory*"), bulks(&["maxmemory", "2048", "maxmemory-policy", "allkeys-lru"]));
    // A write that could never fit is refused without emptying the store.
    let before = h.run("DBSIZE");
    assert!(matches!(h.run(&format!("SET huge {}", "x".repeat(4096))), Frame::Error(e) if e.starts_with("OOM")));
    assert_eq!(h.run("DBSIZE"), before);
    assert!(matches!(h.run("CONFIG SET maxmemory-policy lfu"), Frame::Error(_)));
    assert!(matches!(h.run("CONFIG SET maxmemory lots"), Frame::Error(_)));
    assert_eq!(h.run("CONFIG SET maxmemory 1gb"), Frame::ok());
    assert_eq!(h.run("CONFIG GET maxmemory"), bulks(&["maxmemory", "1073741824"]));
}

#[test]
fn watch_sees_the_changes_of_the_new_writes() {
    let mut h = Harness::new();
    let other = |h: &mut Harness, line: &str| {
        let mut session = Session::new(2);
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        let mut ks = h.db.lock();
        execute(&mut Ctx::new(&h.db, &mut ks, &mut session, h.now), &args)
    };
    h.run("MSET a 1 b 2 c 3");
    h.run("SET t 1 EX 100");
    for (watched, write) in [
        ("a", "APPEND a x"),
        ("a", "SETRANGE a 0 z"),
        ("new", "SETNX new 1"),
        ("a", "SETEX a 10 v"),
        ("a", "PSETEX a 10 v"),
        ("m", "MSETNX m 1 n 2"),
        ("t", "GETEX t EX 5"),
        ("t", "GETEX t PERSIST"),
        ("b", "RENAME b b2"),
        ("b", "RENAME b2 b"),
        ("c", "COPY b c REPLACE"),
    ] {
        assert_eq!(h.run(&format!("WATCH {watched}")), Frame::ok());
        other(&mut h, write);
        h.run("MULTI");
        h.run("PING");
        assert_eq!(h.run("EXEC"), Frame::NullArray, "{write}");
    }
    // What changes nothing leaves the transaction alone.
    h.run("SET a 1");
    for write in ["SETNX a 1", "MSETNX a 1 z 2", "GETEX a", "GETEX a PERSIST", "TOUCH a", "GETRANGE a 0 -1", "COPY a b"]
    {
        h.run("WATCH a b z");
        other(&mut h, write);
        h.run("MULTI");
        h.run("PING");
        assert_eq!(h.run("EXEC"), Frame::Array(vec![Frame::Simple("PONG".into())]), "{write}");
    }
}

#[test]
fn setrange_and_copy_are_admitted_by_what_they_add() {
    let mut h = Harness::new();
    let oom = err("OOM command not allowed when used memory > 'maxmemory'.");
    assert_eq!(h.run("CONFIG SET maxmemory 2kb maxmemory-policy noeviction"), Frame::ok());
    // A short command that would make a long string.
    assert_eq!(h.run("SETRANGE k 1500 x"), int(1501));
    assert_eq!(h.run("SETRANGE k2 1000 x"), oom);
    assert_eq!(h.run("SETRANGE k 2000 x"), oom);
    // Writing within the string adds nothing, and writing nothing neither.
    assert_eq!(h.run("SETRANGE k 100 y"), int(1501));
    assert_eq!(h.run("SETRANGE k 100000 \"\""), int(1501));
    assert_eq!(h.run("SETRANGE k2 100000 \"\""), int(0));
    assert_eq!(h.run("COPY k k2"), oom);
    assert_eq!(h.run("EXISTS k2"), int(0));
    assert!(h.keyspace().used_memory() <= 2048);
    // Under allkeys-lru they make room instead: each value takes about
    // 1575 bytes here, a short key 74.
    h.run("FLUSHDB");
    assert_eq!(h.run("CONFIG SET maxmemory 3200 maxmemory-policy allkeys-lru"), Frame::ok());
    h.run("SET s 1");
    h.now += 10;
    assert_eq!(h.run("SETRANGE k 1500 x"), int(1501));
    h.now += 10;
    assert_eq!(h.run("SETRANGE k2 1500 x"), int(1501));
    assert_eq!(h.run("EXISTS s k k2"), int(2));
    assert!(h.keyspace().used_memory() <= 3200);
    h.now += 10;
    h.run("GET k2");
    assert_eq!(h.run("COPY k2 k3"), int(1));
    assert_eq!(h.run("EXISTS k k2 k3"), int(2));
    assert!(h.keyspace().used_memory() <= 3200);
    // A key bound counts the keys COPY, SETNX and MSETNX would add.
    h.run("FLUSHDB");
    assert_eq!(h.run("CONFIG SET maxmemory 0 maxkeys 2 maxmemory-policy noeviction"), Frame::ok());
    let full = err("OOM command not allowed when the number of keys >= 'maxkeys'.");
    assert_eq!(h.run("SETNX a 1"), int(1));
    assert_eq!(h.run("COPY a z"), int(1));
    assert_eq!(h.run("COPY a b"), full);
    assert_eq!(h.run("MSETNX b 1 c 2"), full);
    assert_eq!(h.run("SETNX b 1"), full);
    assert_eq!(h.run("SETNX a 1"), int(0));
    assert_eq!(h.run("APPEND a 2"), int(2));
    assert_eq!(h.run("COPY a z REPLACE"), int(1));
    assert_eq!(h.run("RENAME a b"), Frame::ok());
}

#[test]
fn lock_commands_without_waiting() {
    let mut h = Harness::new();
    assert_eq!(h.run("SHM.LOCK l tokA 1000"), int(1));
    assert_eq!(h.run("SHM.LOCK l tokB 1000"), Frame::Null);
    assert_eq!(h.run("SHM.EXTEND l tokB 1000"), int(0));
    assert_eq!(h.run("SHM.EXTEND l tokA 5000"), int(1));
    assert_eq!(h.run("SHM.UNLOCK l tokB"), int(0));
    assert_eq!(h.run("SHM.UNLOCK l tokA"), int(1));
    assert_eq!(h.run("SHM.LOCK l tokB 1000"), int(2));
    assert_eq!(h.run("SHM.LOCK l tokC 0"), err("ERR invalid expire time in 'shm.lock' command"));
    assert_eq!(h.run("SHM.LOCK l tokC 10 WAIT -1"), err("ERR timeout is negative"));
    assert_eq!(h.run("SHM.LOCK l tokC 10 LATER 5"), err("ERR syntax error"));
    assert_eq!(h.run("SHM.LOCK l tokC 10 WAIT 5 LATER"), err("ERR syntax error"));
    assert_eq!(h.run("SHM.LOCK l tokC 10 WAIT 5 ASYNC ASYNC"), err("ERR syntax error"));
    // Locks are not keys.
    assert_eq!(h.run("DBSIZE"), int(0));
    h.run("FLUSHDB");
    assert_eq!(h.run("SHM.UNLOCK l tokB"), int(1));
}

#[tokio::test]
async fn a_waiting_lock_is_handed_over_on_release_and_times_out_otherwise() {
    let db = Db::new();
    let run = |session: &mut Session, line: &str| {
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        let mut ks = db.lock();
        let mut ctx = Ctx::new(&db, &mut ks, session, crate::store::now_ms());
        let reply = execute(&mut ctx, &args);
        (reply, ctx.blocked.take())
    };
    let (mut a, mut b, mut c) = (Session::new(1), Session::new(2), Session::new(3));
    assert_eq!(run(&mut a, "SHM.LOCK l ta 60000").0, int(1));
    let (_, waiting) = run(&mut b, "SHM.LOCK l tb 60000 WAIT 5000");
    let waiting = waiting.expect("b blocks");
    let (_, timing_out) = run(&mut c, "SHM.LOCK l tc 60000 WAIT 50");
    assert_eq!(timing_out.expect("c blocks").reply(&db).await, Frame::Null);
    let handle = tokio::spawn({
        let db = db.clone();
        async move { waiting.reply(&db).await }
    });
    assert_eq!(run(&mut a, "SHM.UNLOCK l ta").0, int(1));
    assert_eq!(handle.await.unwrap(), int(2));
    // b holds it now; a cannot take it, and the timed-out c left no waiter.
    assert_eq!(run(&mut a, "SHM.LOCK l ta 60000").0, Frame::Null);
    assert_eq!(db.lock().locks.waiting(), 0);
}

/// Collects the messages a subscribed session receives.
#[derive(Default)]
struct Inbox(parking_lot::Mutex<Vec<Frame>>);

impl crate::store::Mailbox for Inbox {
    fn deliver(&self, m: &crate::store::Message<'_>, _: usize) -> bool {
        use crate::store::Payload;
        let payload = match m.payload {
            Payload::Bulk(b) => Frame::Bulk(b.clone()),
            Payload::Keys(keys) => Frame::Array(keys.iter().cloned().map(Frame::Bulk).collect()),
            Payload::Flush => Frame::Null,
        };
        let mut frame = vec![Frame::Bulk(m.channel.clone()), payload];
        if let Some(p) = m.pattern {
            frame.insert(0, Frame::Bulk(p.clone()));
        }
        self.0.lock().push(Frame::Array(frame));
        true
    }
}

#[test]
fn pubsub_commands_and_keyspace_events() {
    let db = Db::new();
    let inbox = std::sync::Arc::new(Inbox::default());
    let mut subscriber = Session::new(1);
    let mut other = Session::new(2);
    let run = |session: &mut Session, line: &str, now: u64| {
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        let mut ks = db.lock();
        let mut ctx = Ctx::new(&db, &mut ks, session, now);
        ctx.mailbox = Some(inbox.clone());
        execute(&mut ctx, &args)
    };
    let confirm = |verb: &str, name: &str, n: i64| Frame::Array(vec![bulk(verb), bulk(name), int(n)]);
    assert_eq!(
        run(&mut subscriber, "SUBSCRIBE news sport", 0),
        Frame::Many(vec![confirm("subscribe", "news", 1), confirm("subscribe", "sport", 2)])
    );
    assert_eq!(
        run(&mut subscriber, "PSUBSCRIBE __keyspace@0__:user:*", 0),
        Frame::Many(vec![confirm("psubscribe", "__keyspace@0__:user:*", 3)])
    );
    assert_eq!(
        run(&mut subscriber, "GET x", 0),
        err("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
    );
    assert_eq!(run(&mut subscriber, "PING", 0), Frame::Array(vec![bulk("pong"), bulk("")]));
    assert_eq!(run(&mut other, "PUBLISH news hello", 0), int(1));
    assert_eq!(run(&mut other, "PUBLISH nobody hello", 0), int(0));
    assert_eq!(run(&mut other, "PUBSUB CHANNELS", 0), bulks(&["news", "sport"]));
    assert_eq!(run(&mut other, "PUBSUB NUMSUB news x", 0), Frame::Array(vec![bulk("news"), int(1), bulk("x"), int(0)]));
    assert_eq!(run(&mut other, "PUBSUB NUMPAT", 0), int(1));

    // Keyspace events are off until configured.
    run(&mut other, "SET user:1 a", 0);
    assert_eq!(inbox.0.lock().len(), 1);
    assert_eq!(run(&mut other, "CONFIG SET notify-keyspace-events KEA", 0), Frame::ok());
    assert_eq!(run(&mut other, "CONFIG GET notify-keyspace-events", 0), bulks(&["notify-keyspace-events", "AKE"]));
    run(&mut other, "SET user:1 b PX 100", 0);
    run(&mut other, "INCR user:2", 0);
    run(&mut other, "DEL user:2", 0);
    run(&mut other, "GET user:1", 500); // expired on access
    let events: Vec<Frame> = inbox.0.lock()[1..].to_vec();
    let event = |key: &str, what: &str| {
        Frame::Array(vec![bulk("__keyspace@0__:user:*"), bulk(&format!("__keyspace@0__:{key}")), bulk(what)])
    };
    assert_eq!(
        events,
        vec![
            event("user:1", "set"),
            event("user:1", "expire"),
            event("user:2", "incrby"),
            event("user:2", "del"),
            event("user:1", "expired")
        ]
    );

    assert_eq!(
        run(&mut subscriber, "UNSUBSCRIBE", 0),
        Frame::Many(vec![confirm("unsubscribe", "news", 2), confirm("unsubscribe", "sport", 1)])
    );
    assert_eq!(
        run(&mut subscriber, "PUNSUBSCRIBE", 0),
        Frame::Many(vec![confirm("punsubscribe", "__keyspace@0__:user:*", 0)])
    );
    assert_eq!(run(&mut subscriber, "GET user:1", 0), Frame::Null);
    assert_eq!(
        run(&mut subscriber, "UNSUBSCRIBE", 0),
        Frame::Many(vec![Frame::Array(vec![bulk("unsubscribe"), Frame::Null, int(0)])])
    );
    assert_eq!(run(&mut other, "CONFIG SET client-output-buffer-limit \"pubsub 1mb 0 0\"", 0), Frame::ok());
    assert!(matches!(
        run(&mut other, "CONFIG SET client-output-buffer-limit \"pubsub 1mb 1mb 60\"", 0),
        Frame::Error(_)
    ));
}

#[test]
fn the_new_writes_send_redis_keyspace_events() {
    let db = Db::new();
    let inbox = std::sync::Arc::new(Inbox::default());
    let mut subscriber = Session::new(1);
    let mut other = Session::new(2);
    let run = |session: &mut Session, line: &str| {
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        let mut ks = db.lock();
        let mut ctx = Ctx::new(&db, &mut ks, session, 1_000_000);
        ctx.mailbox = Some(inbox.clone());
        execute(&mut ctx, &args)
    };
    run(&mut subscriber, "PSUBSCRIBE __keyevent@0__:*");
    run(&mut other, "CONFIG SET notify-keyspace-events KEA");
    inbox.0.lock().clear();
    // Each line with the events it sends (event and key), as redis-server 7.0 sends them.
    let script: &[(&str, &[(&str, &str)])] = &[
        ("APPEND a x", &[("append", "a")]),
        ("APPEND a \"\"", &[("append", "a")]),
        ("SETRANGE a 3 yz", &[("setrange", "a")]),
        ("SETRANGE a 0 \"\"", &[]),
        ("SETRANGE b 0 \"\"", &[]),
        ("SETNX a 1", &[]),
        ("SETNX c 1", &[("set", "c")]),
        ("SETEX d 100 v", &[("set", "d"), ("expire", "d")]),
        ("PSETEX e 1000 v", &[("set", "e"), ("expire", "e")]),
        ("MSETNX a 1 f 2", &[]),
        ("MSETNX f 1 g 2", &[("set", "f"), ("set", "g")]),
        ("GETEX a EX 100", &[("expire", "a")]),
        ("GETEX a PERSIST", &[("persist", "a")]),
        ("GETEX a PERSIST", &[]),
        ("GETEX a", &[]),
        ("GETEX a PXAT 1", &[("del", "a")]),
        ("RENAME c h", &[("rename_from", "c"), ("rename_to", "h")]),
        ("RENAME d h", &[("rename_from", "d"), ("rename_to", "h")]),
        ("RENAMENX h d", &[("rename_from", "h"), ("rename_to", "d")]),
        ("RENAMENX e d", &[]),
        ("RENAME d d", &[]),
        ("COPY d i", &[("copy_to", "i")]),
        ("COPY d i", &[]),
        ("COPY d i REPLACE", &[("copy_to", "i")]),
        ("TOUCH d i x", &[]),
        ("UNLINK d x i", &[("del", "d"), ("del", "i")]),
        ("SET k v GET EX 10", &[("set", "k"), ("expire", "k")]),
        ("SET k v KEEPTTL GET", &[("set", "k")]),
    ];
    for (line, events) in script {
        run(&mut other, line);
        let expected: Vec<Frame> = events
            .iter()
            .map(|(event, key)| {
                Frame::Array(vec![bulk("__keyevent@0__:*"), bulk(&format!("__keyevent@0__:{event}")), bulk(key)])
            })
            .collect();
        assert_eq!(std::mem::take(&mut *inbox.0.lock()), expected, "{line}");
    }
}

#[test]
fn a_secret_gates_every_command_but_auth() {
    let db = Db::new();
    db.update_config(|c| c.requirepass = Some(Bytes::from_static(b"s3cret")));
    let mut session = Session::for_client(7, &db);
    let mut run = |line: &str| {
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        let mut ks = db.lock();
        let mut ctx = Ctx::new(&db, &mut ks, &mut session, 0);
        execute(&mut ctx, &args)
    };
    assert_eq!(run("GET a"), err("NOAUTH Authentication required."));
    assert_eq!(run("PING"), err("NOAUTH Authentication required."));
    assert!(matches!(run("HELLO 2"), Frame::Error(e) if e.starts_with("NOAUTH HELLO must be called")));
    assert_eq!(run("AUTH wrong"), err("WRONGPASS invalid username-password pair or user is disabled."));
    assert_eq!(run("AUTH other s3cret"), err("WRONGPASS invalid username-password pair or user is disabled."));
    assert_eq!(run("HELLO 2 AUTH default nope"), err("WRONGPASS invalid username-password pair or user is disabled."));
    assert_eq!(run("GET a"), err("NOAUTH Authentication required."));
    assert!(matches!(run("HELLO 2 AUTH default s3cret"), Frame::Array(_)));
    assert_eq!(run("GET a"), Frame::Null);
    let mut other = Session::for_client(8, &db);
    let args = crate::resp::split_args(b"AUTH default s3cret").unwrap();
    let mut ks = db.lock();
    assert_eq!(execute(&mut Ctx::new(&db, &mut ks, &mut other, 0), &args), Frame::ok());
    // The secret is not reported back.
    let args = crate::resp::split_args(b"CONFIG GET *").unwrap();
    let Frame::Array(all) = execute(&mut Ctx::new(&db, &mut ks, &mut other, 0), &args) else { panic!() };
    assert!(!all.contains(&bulk("s3cret")));
}

#[test]
fn rate_limits_fixed_and_sliding() {
    let mut h = Harness::new();
    h.now = 10_000;
    let limit = |allowed: i64, remaining: i64, reset: i64| Frame::Array(vec![int(allowed), int(remaining), int(reset)]);
    assert_eq!(h.run("SHM.RATELIMIT f 2 1000"), limit(1, 1, 1000));
    h.now += 100;
    assert_eq!(h.run("SHM.RATELIMIT f 2 1000"), limit(1, 0, 900));
    assert_eq!(h.run("SHM.RATELIMIT f 2 1000"), limit(0, 0, 900));
    assert_eq!(h.run("PTTL f"), int(900));
    h.now += 900;
    assert_eq!(h.run("SHM.RATELIMIT f 2 1000"), limit(1, 1, 1000));

    // Sliding: 10 per second; 10 at the end of one window leave little room
    // at the start of the next.
    h.now = 20_900;
    for _ in 0..10 {
        let Frame::Array(reply) = h.run("SHM.RATELIMIT s 10 1000 SLIDING") else { panic!() };
        assert_eq!(reply[0], int(1));
    }
    assert_eq!(h.run("SHM.RATELIMIT s 10 1000 SLIDING"), limit(0, 0, 100));
    h.now = 21_200; // 20% into the next window: the previous 10 still weigh 8.
    assert_eq!(h.run("SHM.RATELIMIT s 10 1000 SLIDING"), limit(1, 1, 800));
    assert_eq!(h.run("SHM.RATELIMIT s 10 1000 SLIDING"), limit(1, 0, 800));
    assert_eq!(h.run("SHM.RATELIMIT s 10 1000 SLIDING"), limit(0, 0, 100));
    h.now = 23_500; // two windows later: a clean slate.
    assert_eq!(h.run("SHM.RATELIMIT s 10 1000 SLIDING"), limit(1, 9, 500));

    // A stored window start in the future (clock stepped back) is not a panic.
    h.run("SET future 99999999:1:0");
    let Frame::Array(reply) = h.run("SHM.RATELIMIT future 5 1000 SLIDING") else { panic!() };
    assert_eq!(reply[0], int(1));
    assert_eq!(h.run("SHM.RATELIMIT f 1 9223372036854775807"), err("ERR points and window must be positive integers"));
    assert_eq!(h.run("SHM.RATELIMIT f 0 1000"), err("ERR points and window must be positive integers"));
    assert_eq!(h.run("SHM.RATELIMIT f 1 10 LATER"), err("ERR syntax error"));
    h.run("SET plain hello");
    assert_eq!(h.run("SHM.RATELIMIT plain 1 10"), err("WRONGTYPE the key does not hold a rate limit"));
    assert_eq!(h.run("SHM.RATELIMIT plain 1 10 SLIDING"), err("WRONGTYPE the key does not hold a rate limit"));
}

/// Socket-like clients (each with a mailbox) against one store, for client
/// tracking: client 1 subscribes to `__redis__:invalidate`, 2 tracks and
/// redirects to it, 3 writes.
struct Clients {
    db: Db,
    sessions: std::collections::HashMap<u64, Session>,
    inboxes: std::collections::HashMap<u64, std::sync::Arc<Inbox>>,
    now: u64,
}

const SUB: u64 = 1;
const TRACKER: u64 = 2;
const WRITER: u64 = 3;

impl Clients {
    fn new() -> Clients {
        let mut clients =
            Clients { db: Db::new(), sessions: Default::default(), inboxes: Default::default(), now: 1_000_000 };
        for id in [SUB, TRACKER, WRITER] {
            clients.connect(id);
        }
        assert!(matches!(clients.run(SUB, "SUBSCRIBE __redis__:invalidate"), Frame::Many(_)));
        clients
    }

    fn connect(&mut self, id: u64) {
        self.sessions.insert(id, Session::new(id));
        self.inboxes.insert(id, Default::default());
        self.db.lock().tracking.connect(id);
    }

    fn disconnect(&mut self, id: u64) {
        let mut ks = self.db.lock();
        ks.pubsub.remove_client(id);
        ks.tracking.disconnect(id);
    }

    fn run(&mut self, id: u64, line: &str) -> Frame {
        let args = crate::resp::split_args(line.as_bytes()).unwrap();
        let mut ks = self.db.lock();
        let session = self.sessions.get_mut(&id).unwrap();
        let mut ctx = Ctx::new(&self.db, &mut ks, session, self.now);
        ctx.mailbox = Some(self.inboxes[&id].clone());
        execute(&mut ctx, &args)
    }

    /// The invalidations client `id` received since the last call: the
    /// keys of each (an empty list for a flush).
    fn invalidations(&self, id: u64) -> Vec<Vec<String>> {
        std::mem::take(&mut *self.inboxes[&id].0.lock())
            .into_iter()
            .map(|message| match message {
                Frame::Array(parts) if parts[0] == bulk("__redis__:invalidate") => match &parts[1] {
                    Frame::Array(keys) => keys
                        .iter()
                        .map(|k| match k {
                            Frame::Bulk(k) => String::from_utf8_lossy(k).into_owned(),
                            other => panic!("key {other:?}"),
                        })
                        .collect(),
                    Frame::Null => vec![],
                    other => panic!("payload {other:?}"),
                },
                other => panic!("not an invalidation: {other:?}"),
            })
            .collect()
    }

    fn info(&mut self, field: &str) -> String {
        let Frame::Bulk(info) = self.run(WRITER, "INFO") else { panic!() };
        let info = String::from_utf8_lossy(&info).into_owned();
        let prefix = format!("{field}:");
        info.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {field}")).to_string()
    }
}

fn keys(list: &[&str]) -> Vec<Vec<String>> {
    list.iter().map(|k| vec![k.to_string()]).collect()
}

const FLUSHED: Vec<String> = Vec::new();

#[test]
fn tracking_invalidates_a_read_key_on_every_kind_of_change() {
    let mut c = Clients::new();
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1"), Frame::ok());
    assert_eq!(c.run(TRACKER, "GET foo"), Frame::Null);
    // Even a missing key is remembered: its creation is a change.
    c.run(WRITER, "SET foo 1");
    assert_eq!(c.invalidations(SUB), keys(&["foo"]));
    // Forgotten once sent: the next change needs a new read.
    c.run(WRITER, "SET foo 2");
    assert!(c.invalidations(SUB).is_empty());

    c.run(TRACKER, "GET foo");
    c.run(TRACKER, "GET foo");
    assert_eq!((c.info("tracking_total_keys"), c.info("tracking_total_items")), ("1".into(), "1".into()));
    assert_eq!(c.info("tracking_clients"), "1");
    c.run(WRITER, "DEL foo");
    assert_eq!(c.invalidations(SUB), keys(&["foo"]));
    assert_eq!(c.info("tracking_total_keys"), "0");

    // Every key of a multi-key read; each change sends its own message.
    c.run(TRACKER, "MGET a b");
    c.run(WRITER, "MSET a 1 b 2");
    assert_eq!(c.invalidations(SUB), keys(&["a", "b"]));
    for read in ["EXISTS a", "TTL a", "PTTL a", "TYPE a", "STRLEN a", "EXPIRETIME a"] {
        c.run(TRACKER, read);
        c.run(WRITER, "INCR a");
        assert_eq!(c.invalidations(SUB), keys(&["a"]), "{read}");
    }
    // Writes that do not read register nothing.
    c.run(TRACKER, "SET mine 1");
    c.run(WRITER, "SET mine 2");
    assert!(c.invalidations(SUB).is_empty());

    // ttl changes
    c.run(TRACKER, "GET a");
    c.run(WRITER, "EXPIRE a 100");
    c.run(TRACKER, "GET a");
    c.run(WRITER, "PERSIST a");
    c.run(TRACKER, "GET a");
    c.run(WRITER, "PERSIST a"); // no ttl: no change
    assert_eq!(c.invalidations(SUB), keys(&["a", "a"]));
    for write in ["GETDEL a", "GETSET a x", "SET a y KEEPTTL", "DEL a", "INCRBY a 2", "SET a 1 PXAT 1"] {
        c.run(TRACKER, "GET a");
        c.run(WRITER, write);
        assert_eq!(c.invalidations(SUB), keys(&["a"]), "{write}");
    }

    // Expiry found by a read of another client, and by the sweep.
    c.run(WRITER, "SET e v PX 100");
    c.run(TRACKER, "GET e");
    c.now += 200;
    assert_eq!(c.run(WRITER, "GET e"), Frame::Null);
    assert_eq!(c.invalidations(SUB), keys(&["e"]));
    c.run(WRITER, "SET e v PX 100");
    c.run(TRACKER, "GET e");
    c.db.lock().purge_expired(c.now + 200, 100);
    assert_eq!(c.invalidations(SUB), keys(&["e"]));

    // Eviction by a memory bound.
    c.run(WRITER, "FLUSHDB");
    assert_eq!(c.invalidations(SUB), vec![FLUSHED]);
    c.run(WRITER, "CONFIG SET maxkeys 2 maxmemory-policy allkeys-lru");
    c.run(WRITER, "MSET old 1 new 1");
    c.run(TRACKER, "GET old");
    c.now += 10;
    c.run(TRACKER, "GET new");
    c.run(WRITER, "SET third 1");
    assert_eq!(c.invalidations(SUB), keys(&["old"]));
    c.run(WRITER, "CONFIG SET maxkeys 0");

    // Commands run by EXEC are tracked like the others.
    c.run(TRACKER, "MULTI");
    c.run(TRACKER, "GET m");
    c.run(TRACKER, "EXEC");
    c.run(WRITER, "SET m 1");
    assert_eq!(c.invalidations(SUB), keys(&["m"]));

    // A flush: one null-payload message, and nothing is remembered after.
    c.run(TRACKER, "MGET x y z");
    assert_eq!(c.run(WRITER, "FLUSHALL"), Frame::ok());
    assert_eq!(c.invalidations(SUB), vec![FLUSHED]);
    assert_eq!(c.info("tracking_total_keys"), "0");
    c.run(WRITER, "SET x 1");
    assert!(c.invalidations(SUB).is_empty());

    // Two tracking clients of one key: one message each.
    c.connect(4);
    c.run(4, "CLIENT TRACKING ON REDIRECT 1");
    c.run(TRACKER, "GET shared");
    c.run(4, "GET shared");
    assert_eq!(c.info("tracking_total_items"), "2");
    c.run(WRITER, "SET shared 1");
    assert_eq!(c.invalidations(SUB), keys(&["shared", "shared"]));
    c.run(WRITER, "FLUSHDB");
    assert_eq!(c.invalidations(SUB), vec![FLUSHED, FLUSHED]);
    // Only the subscriber ever received anything.
    for id in [TRACKER, WRITER, 4] {
        assert!(c.inboxes[&id].0.lock().is_empty());
    }
}

#[test]
fn tracking_noloop_skips_the_clients_own_changes() {
    let mut c = Clients::new();
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1 NOLOOP"), Frame::ok());
    c.run(TRACKER, "GET k");
    c.run(TRACKER, "SET k mine");
    assert!(c.invalidations(SUB).is_empty());
    // As in Redis, the key is forgotten all the same.
    c.run(WRITER, "SET k theirs");
    assert!(c.invalidations(SUB).is_empty());
    c.run(TRACKER, "GET k");
    c.run(WRITER, "SET k again");
    assert_eq!(c.invalidations(SUB), keys(&["k"]));

    // A key its own read finds expired is its own change (as in Redis);
    // the sweep's expiry is nobody's.
    c.run(WRITER, "SET e v PX 100");
    c.run(TRACKER, "GET e");
    c.now += 200;
    assert_eq!(c.run(TRACKER, "GET e"), Frame::Null);
    assert!(c.invalidations(SUB).is_empty());
    c.run(WRITER, "SET s v PX 100");
    c.run(TRACKER, "GET s");
    c.db.lock().purge_expired(c.now + 200, 100);
    assert_eq!(c.invalidations(SUB), keys(&["s"]));

    // A flush is always sent, even to the client that flushed.
    c.run(TRACKER, "FLUSHDB");
    assert_eq!(c.invalidations(SUB), vec![FLUSHED]);

    // ON again without NOLOOP: its own writes are reported.
    c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1");
    c.run(TRACKER, "GET k");
    c.run(TRACKER, "SET k 1");
    assert_eq!(c.invalidations(SUB), keys(&["k"]));
}

#[test]
fn tracking_state_ends_with_off_and_with_disconnects() {
    let mut c = Clients::new();
    c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1");
    c.run(TRACKER, "MGET a b c");
    assert_eq!(c.info("tracking_total_keys"), "3");
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING OFF"), Frame::ok());
    assert_eq!((c.info("tracking_total_keys"), c.info("tracking_clients")), ("0".into(), "0".into()));
    c.run(WRITER, "MSET a 1 b 1 c 1");
    c.run(TRACKER, "GET a");
    c.run(WRITER, "SET a 2");
    assert!(c.invalidations(SUB).is_empty());

    // A tracking client that disconnects leaves nothing behind, even for
    // keys another client also tracks.
    c.connect(4);
    c.run(4, "CLIENT TRACKING ON REDIRECT 1");
    c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1");
    c.run(TRACKER, "MGET a b");
    c.run(4, "MGET b c");
    assert_eq!((c.info("tracking_total_keys"), c.info("tracking_total_items")), ("3".into(), "4".into()));
    c.disconnect(4);
    assert_eq!((c.info("tracking_total_keys"), c.info("tracking_total_items")), ("2".into(), "2".into()));
    c.run(WRITER, "MSET b 2 c 2");
    assert_eq!(c.invalidations(SUB), keys(&["b"]));

    // The redirect client disconnects: the tracking client stays in
    // tracking mode, marked, but remembers nothing more.
    c.run(TRACKER, "GET z");
    c.disconnect(SUB);
    assert_eq!(c.info("tracking_total_keys"), "0");
    c.run(TRACKER, "GET y");
    assert_eq!(c.info("tracking_total_keys"), "0");
    assert_eq!(c.run(TRACKER, "CLIENT GETREDIR"), int(1));
    let info = |flags: &[&str], redirect: i64| {
        Frame::Array(vec![
            bulk("flags"),
            bulks(flags),
            bulk("redirect"),
            int(redirect),
            bulk("prefixes"),
            Frame::Array(vec![]),
        ])
    };
    assert_eq!(c.run(TRACKER, "CLIENT TRACKINGINFO"), info(&["on", "broken_redirect"], 1));
    let Frame::Bulk(line) = c.run(TRACKER, "CLIENT INFO") else { panic!() };
    assert!(String::from_utf8_lossy(&line).contains(" flags=tR db=0 redir=1 resp=2 "), "{line:?}");
    assert_eq!(
        c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1"),
        err("ERR The client ID you want redirect to does not exist")
    );
    // A new redirect client: tracking works again.
    c.connect(5);
    c.run(5, "SUBSCRIBE elsewhere");
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 5 NOLOOP"), Frame::ok());
    assert_eq!(c.run(TRACKER, "CLIENT TRACKINGINFO"), info(&["on", "noloop"], 5));
    c.run(TRACKER, "GET y");
    c.run(WRITER, "SET y 1");
    // Subscribed to anything is enough, as in Redis.
    let received = std::mem::take(&mut *c.inboxes[&5].0.lock());
    assert_eq!(received, vec![Frame::Array(vec![bulk("__redis__:invalidate"), bulks(&["y"])])]);

    // A redirect client not in subscribed mode gets nothing (RESP2 has no
    // room for it among replies), as in Redis; the key is forgotten.
    c.connect(6);
    c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 6");
    c.run(TRACKER, "GET w");
    c.run(WRITER, "SET w 1");
    assert!(c.inboxes[&6].0.lock().is_empty());
    assert_eq!(c.info("tracking_total_keys"), "0");

    // The tracking client itself disconnects.
    c.run(TRACKER, "GET v");
    c.disconnect(TRACKER);
    assert_eq!((c.info("tracking_total_keys"), c.info("tracking_clients")), ("0".into(), "0".into()));
}

#[test]
fn tracking_options_and_errors() {
    let mut c = Clients::new();
    let unsupported = |option: &str| err(&format!("ERR CLIENT TRACKING {option} is not supported by cluster-shm"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON"), err("ERR CLIENT TRACKING needs REDIRECT <client-id> with RESP2"));
    assert_eq!(
        c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 99"),
        err("ERR The client ID you want redirect to does not exist")
    );
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT x"), err("ERR value is not an integer or out of range"));
    assert_eq!(
        c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1 REDIRECT 1"),
        err("ERR A client can only redirect to a single other client")
    );
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1 BCAST"), unsupported("BCAST"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON optin"), unsupported("OPTIN"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON OPTOUT"), unsupported("OPTOUT"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON BCAST PREFIX user:"), unsupported("BCAST"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON PREFIX user:"), unsupported("PREFIX"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON PREFIX"), err("ERR syntax error"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT"), err("ERR syntax error"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING MAYBE"), err("ERR syntax error"));
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING"), err("ERR wrong number of arguments for 'client|tracking' command"));
    assert_eq!(c.run(TRACKER, "CLIENT GETREDIR"), int(-1));
    assert_eq!(
        c.run(TRACKER, "CLIENT TRACKINGINFO"),
        Frame::Array(vec![
            bulk("flags"),
            bulks(&["off"]),
            bulk("redirect"),
            int(-1),
            bulk("prefixes"),
            Frame::Array(vec![])
        ])
    );
    assert_eq!(c.info("tracking_clients"), "0");
    // OFF when not tracking is fine.
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING OFF"), Frame::ok());
    assert_eq!(c.run(TRACKER, "client tracking on redirect 1"), Frame::ok());
    assert_eq!(c.run(TRACKER, "CLIENT GETREDIR"), int(1));
    let Frame::Bulk(line) = c.run(TRACKER, "CLIENT INFO") else { panic!() };
    assert!(String::from_utf8_lossy(&line).contains(" flags=t db=0 redir=1 resp=2 "), "{line:?}");
    let Frame::Bulk(line) = c.run(WRITER, "CLIENT INFO") else { panic!() };
    assert!(String::from_utf8_lossy(&line).contains(" flags=N db=0 redir=-1 resp=2 "), "{line:?}");

    // The primary's in-process session (no mailbox) has no near cache.
    let mut h = Harness::new();
    assert_eq!(h.run("CLIENT TRACKING OFF"), err("ERR CLIENT TRACKING is not available to in-process calls"));
}

#[test]
fn tracking_table_max_keys_invalidates_past_the_bound() {
    let mut c = Clients::new();
    assert_eq!(c.run(WRITER, "CONFIG GET tracking-table-max-keys"), bulks(&["tracking-table-max-keys", "1000000"]));
    assert_eq!(c.run(WRITER, "CONFIG SET tracking-table-max-keys 3"), Frame::ok());
    c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1");
    c.run(TRACKER, "MGET k1 k2 k3 k4 k5");
    assert_eq!(c.info("tracking_total_keys"), "3");
    let evicted: Vec<Vec<String>> = c.invalidations(SUB);
    assert_eq!(evicted.len(), 2);
    // The keys sent are the keys forgotten: writing them sends nothing.
    for key in evicted.iter().flatten() {
        c.run(WRITER, &format!("SET {key} 1"));
    }
    assert!(c.invalidations(SUB).is_empty());
    // Lowering the bound applies at once.
    assert_eq!(c.run(WRITER, "CONFIG SET tracking-table-max-keys 1"), Frame::ok());
    assert_eq!(c.invalidations(SUB).len(), 2);
    assert_eq!((c.info("tracking_total_keys"), c.info("tracking_total_items")), ("1".into(), "1".into()));
    assert!(matches!(c.run(WRITER, "CONFIG SET tracking-table-max-keys -1"), Frame::Error(_)));
    assert!(matches!(c.run(WRITER, "CONFIG SET tracking-table-max-keys lots"), Frame::Error(_)));
    // 0: unbounded.
    assert_eq!(c.run(WRITER, "CONFIG SET tracking-table-max-keys 0"), Frame::ok());
    c.run(TRACKER, "MGET a b c d e f");
    assert_eq!(c.info("tracking_total_keys"), "7");
    assert!(c.invalidations(SUB).is_empty());
}

#[test]
fn tracking_invalidates_on_the_new_writes() {
    let mut c = Clients::new();
    assert_eq!(c.run(TRACKER, "CLIENT TRACKING ON REDIRECT 1"), Frame::ok());
    c.run(WRITER, "MSET a 1 b 2 t 3");
    // The new reads remember their keys too.
    for read in ["GETRANGE a 0 -1", "SUBSTR a 0 1", "TOUCH a"] {
        c.run(TRACKER, read);
        c.run(WRITER, "APPEND a x");
        assert_eq!(c.invalidations(SUB), keys(&["a"]), "{read}");
    }
    for write in ["APPEND a x", "SETRANGE a 0 z", "SETEX a 10 v", "PSETEX a 10 v", "GETEX a EX 5", "GETEX a PERSIST"] {
        c.run(TRACKER, "GET a");
        c.run(WRITER, write);
        assert_eq!(c.invalidations(SUB), keys(&["a"]), "{write}");
    }
    c.run(TRACKER, "MGET n1 n2");
    c.run(WRITER, "SETNX n1 1");
    c.run(WRITER, "MSETNX n2 1 n3 1");
    assert_eq!(c.invalidations(SUB), keys(&["n1", "n2"]));
    // RENAME changes both keys; COPY its destination.
    c.run(TRACKER, "MGET a b");
    c.run(WRITER, "RENAME a b");
    assert_eq!(c.invalidations(SUB), keys(&["a", "b"]));
    c.run(TRACKER, "MGET b c");
    c.run(WRITER, "COPY b c");
    assert_eq!(c.invalidations(SUB), keys(&["c"]));
    // What changes nothing sends nothing.
    c.run(TRACKER, "MGET b t");
    for write in [
        "SETNX b 1",
        "GETEX b",
        "GETEX t PERSIST",
        "SETRANGE b 0 \"\"",
        "COPY t b",
        "RENAMENX t b",
        "OBJECT ENCODING b",
    ] {
        c.run(WRITER, write);
    }
    assert!(c.invalidations(SUB).is_empty());
}

#[test]
fn set_attached_writes_its_parts_as_one_value_as_set_does() {
    let mut h = Harness::new();
    assert_eq!(h.run("SET held x EX 100"), Frame::ok());
    let set_attached = |h: &mut Harness, key: &'static [u8], parts: &[&[u8]]| {
        let mut ks = h.db.lock();
        ks.maintain(h.now); // the heartbeat an attached process checks
        let mut ctx = Ctx::new(&h.db, &mut ks, &mut h.session, h.now);
        super::set_attached(&mut ctx, &Bytes::from_static(key), parts)
    };
    let version = |h: &Harness, key: &[u8]| h.keyspace().version(key, h.now);
    let before = version(&h, b"held");
    assert_eq!(set_attached(&mut h, b"held", &[b"ab", b"", b"cd"]), super::AttachedSet::Done(Frame::ok()));
    assert!(version(&h, b"held") > before, "a write moves the key's version (WATCH)");
    assert_eq!(set_attached(&mut h, b"new", &[b"\xffSHM\x01", b"bytes"]), super::AttachedSet::Done(Frame::ok()));
    assert_eq!(h.run("GET held"), bulk("abcd"));
    assert_eq!(h.run("TTL held"), int(-1));
    assert_eq!(h.run("GET new"), Frame::Bulk(Bytes::from_static(b"\xffSHM\x01bytes")));
    assert_eq!(h.run("STRLEN new"), int(10));
    // Under a memory bound the general path runs it (admission, eviction).
    assert_eq!(h.run("CONFIG SET maxmemory 100mb"), Frame::ok());
    assert_eq!(set_attached(&mut h, b"new", &[b"other"]), super::AttachedSet::Bounded);
    assert_eq!(h.run("CONFIG SET maxmemory 0"), Frame::ok());
    assert_eq!(h.run("CONFIG SET maxkeys 1000"), Frame::ok());
    assert_eq!(set_attached(&mut h, b"new", &[b"other"]), super::AttachedSet::Bounded);
    assert_eq!(h.run("CONFIG SET maxkeys 0"), Frame::ok());
    // A broker that is closing takes every command itself.
    h.keyspace().close_store();
    assert_eq!(set_attached(&mut h, b"new", &[b"other"]), super::AttachedSet::Forward);
    assert_eq!(h.run("GET new"), Frame::Bulk(Bytes::from_static(b"\xffSHM\x01bytes")));
}

//! Any bytes, decoded as client commands and run against a store: command
//! parsing and every handler must reply (never panic), whatever the input.
#![no_main]

use bytes::BytesMut;
use cluster_shm::cmd::{execute, Ctx, Session};
use cluster_shm::resp::{parse_command, Limits};
use cluster_shm::store::Db;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let db = Db::new();
    let mut session = Session::new(1);
    let limits = Limits { max_bulk_len: 1 << 16, max_array_len: 64, max_inline_len: 1 << 12, max_depth: 8 };
    // Strings grow (SETRANGE, APPEND) only as far as proto-max-bulk-len, so
    // a short input cannot make the store allocate 512 MiB.
    db.update_config(|c| c.limits = limits);
    let mut buf = BytesMut::from(data);
    let mut now = 1_000_000;
    for _ in 0..256 {
        let Ok(Some(args)) = parse_command(&mut buf, &limits) else { break };
        if args.is_empty() {
            continue;
        }
        let mut ks = db.lock();
        let mut ctx = Ctx::new(&db, &mut ks, &mut session, now);
        let reply = execute(&mut ctx, &args);
        // Every reply can be written to the wire.
        let _ = reply.to_bytes();
        now += 7;
    }
});

//! Commands about the shared store itself.

use bytes::Bytes;

use super::{try_reply, CommandSpec, Ctx};
use crate::resp::Frame;

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "shm.attach", arity: 1, flags: &["noscript", "fast"], keys: (0, 0, 0), group: "server", since: "0.2.0", summary: "Hands this process the shared store's descriptor (SCM_RIGHTS, with the reply: layout version, mapping size). Unix sockets only.", run: attach },
    CommandSpec { name: "shm.slot", arity: 2, flags: &["noscript", "fast"], keys: (0, 0, 0), group: "server", since: "0.2.0", summary: "Names a slot of the shared store this connection's process took: the broker repairs it if the process dies.", run: slot },
    CommandSpec { name: "shm.verify", arity: 1, flags: &["admin", "noscript"], keys: (0, 0, 0), group: "server", since: "0.2.0", summary: "Walks the whole shared store under every lock; replies OK or one line per inconsistency.", run: verify },
];

fn attach(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Frame {
    if ctx.ks.store().region().fd().is_none() {
        return Frame::error("ERR this broker's store cannot be shared on this system");
    }
    ctx.session.send_store_fd = true;
    Frame::Array(vec![
        Frame::Integer(crate::shm::layout::LAYOUT_VERSION as i64),
        Frame::Integer(ctx.ks.store().region().len() as i64),
    ])
}

fn slot(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let slot = try_reply!(super::int_arg(&args[1]));
    if !(0..crate::shm::layout::MAX_SLOTS as i64).contains(&slot) {
        return Frame::error("ERR slot out of range");
    }
    ctx.session.store_slots.push(slot as u32);
    Frame::ok()
}

fn verify(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Frame {
    if ctx.in_transaction {
        return Frame::error("ERR SHM.VERIFY is not allowed in a transaction");
    }
    let problems = ctx.ks.verify();
    if problems.is_empty() {
        Frame::ok()
    } else {
        Frame::Array(problems.into_iter().map(|p| Frame::Bulk(Bytes::from(p))).collect())
    }
}

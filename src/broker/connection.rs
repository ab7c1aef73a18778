//! One client connection: decode commands, run them against the store and
//! send the replies, reading and writing at the same time.
//!
//! The read side parses every complete command in its buffer, runs the batch
//! under one store lock and hands the encoded replies to a writer task. It
//! keeps reading while the writer writes, so a client that pipelines large
//! values never deadlocks against its own replies; it pauses only when the
//! replies not yet taken by the client pass a high-water mark.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

use crate::cmd::{self, Blocked, Ctx, Session};
use crate::resp::{encode_push, parse_command, Frame, Limits};
use crate::store::{now_ms, Db, Mailbox, Message, Payload};

/// Replies waiting for the client above which the broker stops reading
/// from it until the client catches up.
const OUTPUT_HIGH_WATER: usize = 16 * 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Replies encoded by one batch before the rest of the batch waits its turn,
/// so a few bytes of requests cannot produce an unbounded burst of replies.
const MAX_BATCH_OUTPUT: usize = 1024 * 1024;
/// Input read ahead while a command is blocked, before reading pauses.
const MAX_INPUT_WHILE_BLOCKED: usize = 1024 * 1024;

/// Bytes handed to the writer and not yet written, shared by both halves
/// and by the connection's pub/sub mailbox.
struct Backlog {
    bytes: AtomicUsize,
    /// The broker-wide total, for INFO.
    total: Arc<AtomicUsize>,
    drained: Notify,
    /// Set when a subscriber fell too far behind: the connection closes.
    killed: AtomicBool,
    kill: Notify,
}

impl Backlog {
    fn new(total: Arc<AtomicUsize>) -> Backlog {
        Backlog {
            bytes: AtomicUsize::new(0),
            total,
            drained: Notify::new(),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        }
    }

    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.total.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Where messages for a subscribed connection go: straight into its reply
/// queue, in order with its replies.
struct ConnectionMailbox {
    replies: mpsc::UnboundedSender<Bytes>,
    backlog: Arc<Backlog>,
    /// SHM.PUSHES ON: messages are pushes, and one that would pass the output
    /// limit is dropped rather than the connection cut off.
    pushes: AtomicBool,
    /// A message was dropped so: the next one delivered is preceded by a
    /// `shm.missed` push.
    dropped: AtomicBool,
}

impl Mailbox for ConnectionMailbox {
    fn deliver(&self, message: &Message<'_>, output_limit: usize) -> bool {
        if self.backlog.killed.load(Ordering::Acquire) {
            return false;
        }
        let payload = match message.payload {
            Payload::Bulk(bytes) => Frame::Bulk(bytes.clone()),
            Payload::Keys(keys) => Frame::Array(keys.iter().cloned().map(Frame::Bulk).collect()),
            Payload::Flush => Frame::Null,
        };
        let items = match message.pattern {
            Some(pattern) => vec![
                Frame::bulk_str("pmessage"),
                Frame::Bulk(pattern.clone()),
                Frame::Bulk(message.channel.clone()),
                payload,
            ],
            None => vec![Frame::bulk_str("message"), Frame::Bulk(message.channel.clone()), payload],
        };
        let pushes = self.pushes.load(Ordering::Acquire);
        let bytes = if pushes { encode_push(&items) } else { Frame::Array(items).to_bytes() };
        if output_limit > 0 && self.backlog.bytes.load(Ordering::Acquire) + bytes.len() > output_limit {
            if pushes {
                // The connection also carries the client's calls, lock waits
                // and locks: cutting it off would lose them. The message is
                // dropped instead (counted as delivered, as Redis counts a
                // subscriber it then cuts off) and the client told.
                self.dropped.store(true, Ordering::Release);
                return true;
            }
            self.backlog.killed.store(true, Ordering::Release);
            self.backlog.kill.notify_one();
            return false;
        }
        if pushes && self.dropped.swap(false, Ordering::AcqRel) {
            self.push(encode_push(&[Frame::bulk_str("shm.missed"), Frame::bulk_str("overflow")]));
        }
        self.push(bytes)
    }

    fn frame_as_pushes(&self, on: bool) -> bool {
        self.pushes.store(on, Ordering::Release);
        true
    }

    /// Queues an encoded frame for the client, counted in its backlog until
    /// written; false when the connection is gone.
    fn push(&self, frame: Bytes) -> bool {
        let len = frame.len();
        self.backlog.add(len);
        if self.replies.send(frame).is_err() {
            self.backlog.sub(len);
            return false;
        }
        true
    }
}

/// Serves one client. `raw_fd` is the socket's descriptor when it is a Unix
/// socket, over which SHM.ATTACH hands out the store's descriptor.
pub async fn serve<S>(stream: S, raw_fd: Option<RawFd>, db: Db, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let backlog = Arc::new(Backlog::new(db.counters().output_buffer_bytes.clone()));
    let (replies, queue) = mpsc::unbounded_channel::<Bytes>();
    let writer_task = tokio::spawn(write_replies(writer, queue, backlog.clone()));

    let mailbox: Arc<dyn Mailbox> = Arc::new(ConnectionMailbox {
        replies: replies.clone(),
        backlog: backlog.clone(),
        pushes: AtomicBool::new(false),
        dropped: AtomicBool::new(false),
    });
    let mut session = Session::for_client(db.counters().next_client_id(), &db);
    // Known as connected, so that CLIENT TRACKING can redirect to it.
    db.lock().tracking.connect(session.id);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::new();
    let mut pending: VecDeque<Vec<Bytes>> = VecDeque::new();
    let mut fatal: Option<Frame> = None;
    let mut closed_by_client = false;
    'serve: loop {
        while backlog.bytes.load(Ordering::Acquire) > OUTPUT_HIGH_WATER {
            tokio::select! {
                _ = backlog.drained.notified() => {}
                _ = backlog.kill.notified() => break 'serve,
                _ = shutdown.changed() => break 'serve,
            }
        }
        input.reserve(READ_CHUNK);
        let read = tokio::select! {
            read = reader.read_buf(&mut input) => read,
            _ = backlog.kill.notified() => break,
            _ = shutdown.changed() => break,
        };
        match read {
            Ok(0) | Err(_) => {
                closed_by_client = true;
                break;
            }
            Ok(_) => {}
        }
        let (authenticated_limits, query_buffer_limit) = db.input_limits();
        if input.len() > query_buffer_limit {
            // A client piling up an endless command: drop it, not the broker.
            break;
        }

        // Run what has arrived; a blocking command parks the rest (as in
        // Redis) until its reply is ready.
        loop {
            // Replies the client has not taken pile up no further: wait.
            while backlog.bytes.load(Ordering::Acquire) > OUTPUT_HIGH_WATER {
                tokio::select! {
                    _ = backlog.drained.notified() => {}
                    _ = backlog.kill.notified() => break 'serve,
                    _ = watch_for_eof(&mut reader, &mut input) => break 'serve,
                    _ = shutdown.changed() => break 'serve,
                }
            }
            // Until it authenticates, a client gets one small command at a time.
            let (limits, one) =
                if session.authenticated { (authenticated_limits, false) } else { (Limits::unauthenticated(), true) };
            parse_commands(&mut input, &limits, one, &mut pending, &mut fatal);
            if pending.is_empty() {
                break;
            }
            let batch = Batch { db: &db, mailbox: &mailbox, replies: &replies, backlog: &backlog };
            let Ok((blocked, attach)) = batch.run(&mut session, &mut pending, &mut output) else {
                break 'serve;
            };
            if let Some(reply) = attach {
                session.send_store_fd = false;
                if !hand_over_store(&db, raw_fd, reply, &replies, &backlog, &mut output).await {
                    break 'serve;
                }
            }
            if let Some(blocked) = blocked {
                let reply = tokio::select! {
                    reply = blocked.reply(&db) => reply,
                    _ = watch_for_eof(&mut reader, &mut input) => break 'serve,
                    _ = shutdown.changed() => break 'serve,
                };
                reply.encode(&mut output);
            }
            if session.closing {
                break;
            }
        }
        if !send(&replies, &backlog, &mut output) {
            break;
        }
        if let Some(reply) = fatal.take() {
            reply.encode(&mut output);
            send(&replies, &backlog, &mut output);
            break;
        }
        if session.closing {
            break;
        }
    }
    // The client is gone or done: its locks pass on, its waits, its
    // subscriptions and its tracking end (and that of clients redirecting
    // their invalidations to it).
    {
        let mut ks = db.lock();
        ks.locks.release_client(session.id, now_ms());
        ks.pubsub.remove_client(session.id);
        ks.tracking.disconnect(session.id);
    }
    if closed_by_client && !session.store_slots.is_empty() {
        // Apart from the connection's own end, which must not wait for it.
        tokio::spawn(repair_slots(db.clone(), std::mem::take(&mut session.store_slots)));
    }
    drop(mailbox);
    drop(replies);
    if backlog.killed.load(Ordering::Acquire) {
        // Too far behind to wait for: drop what it never read.
        writer_task.abort();
    }
    // Dropping the senders lets the writer flush what is queued, then close.
    let _ = writer_task.await;
    // Whatever the writer could not deliver is no longer held.
    backlog.sub(backlog.bytes.load(Ordering::Acquire));
}

/// Sends the reply to SHM.ATTACH with the store's descriptor, once every
/// reply before it is written (a descriptor rides on the first byte it is
/// sent with). False when the connection must end.
async fn hand_over_store(
    db: &Db,
    raw_fd: Option<RawFd>,
    reply: Frame,
    replies: &mpsc::UnboundedSender<Bytes>,
    backlog: &Backlog,
    output: &mut BytesMut,
) -> bool {
    if !send(replies, backlog, output) {
        return false;
    }
    let store_fd = db.lock().store().region().fd();
    let (Some(sock), Some(store_fd)) = (raw_fd, store_fd) else {
        Frame::error("ERR SHM.ATTACH needs a Unix socket").encode(output);
        return send(replies, backlog, output);
    };
    for _ in 0..2_000 {
        if backlog.bytes.load(Ordering::Acquire) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let bytes = reply.to_bytes();
    tokio::task::block_in_place(|| crate::shm::attach::send_with_fd(sock, &bytes, store_fd)).is_ok()
}

/// The process at the other end of a connection that closed took these
/// slots of the store. A process's descriptors close as it exits, after its
/// memory is unmapped: once it is gone (or a zombie), what it left is
/// repaired. A process that merely closed the connection is left alone.
async fn repair_slots(db: Db, slots: Vec<u32>) {
    let store = db.lock().store().clone();
    for _ in 0..200 {
        let pids: Vec<u64> = slots
            .iter()
            .filter_map(|&slot| {
                crate::shm::Handle::attached(&store).into_iter().find(|&(s, _)| s == slot).map(|(_, pid)| pid)
            })
            .collect();
        if pids.is_empty() {
            return;
        }
        if pids.iter().all(|&pid| !crate::shm::txn_is_alive(pid)) {
            for &slot in &slots {
                crate::shm::Handle::recover_if_dead(&store, slot);
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Moves every complete command (or only the first, with `one`) from
/// `input` to `pending`; a protocol error ends parsing (the commands before
/// it still run).
fn parse_commands(
    input: &mut BytesMut,
    limits: &Limits,
    one: bool,
    pending: &mut VecDeque<Vec<Bytes>>,
    fatal: &mut Option<Frame>,
) {
    while fatal.is_none() && (!one || pending.is_empty()) {
        match parse_command(input, limits) {
            Ok(Some(args)) if args.is_empty() => {}
            Ok(Some(args)) => pending.push_back(args),
            Ok(None) => break,
            Err(error) => *fatal = Some(error.reply()),
        }
    }
}

/// Hands encoded replies to the writer; false when the writer is gone.
fn send(replies: &mpsc::UnboundedSender<Bytes>, backlog: &Backlog, output: &mut BytesMut) -> bool {
    if output.is_empty() {
        return true;
    }
    let chunk = output.split().freeze();
    let len = chunk.len();
    backlog.add(len);
    if replies.send(chunk).is_err() {
        backlog.sub(len);
        return false;
    }
    true
}

/// While a command is blocked, keeps reading (without running anything) so
/// that a client that hangs up is noticed. Resolves when the peer is gone.
async fn watch_for_eof<R: AsyncRead + Unpin>(reader: &mut R, input: &mut BytesMut) {
    loop {
        if input.len() > MAX_INPUT_WHILE_BLOCKED {
            return std::future::pending().await;
        }
        input.reserve(READ_CHUNK);
        match reader.read_buf(input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// What running a batch of commands needs from its connection.
struct Batch<'a> {
    db: &'a Db,
    mailbox: &'a Arc<dyn Mailbox>,
    replies: &'a mpsc::UnboundedSender<Bytes>,
    backlog: &'a Backlog,
}

impl Batch<'_> {
    /// Runs queued commands in arrival order under one store lock and
    /// queues their replies before releasing it, so that a SUBSCRIBE
    /// confirmation always precedes the messages that follow it. Stops at a
    /// blocking command (returned, its reply to be awaited) and after QUIT.
    /// Err when the writer is gone.
    fn run(
        &self,
        session: &mut Session,
        pending: &mut VecDeque<Vec<Bytes>>,
        output: &mut BytesMut,
    ) -> Result<(Option<Blocked>, Option<Frame>), ()> {
        if pending.is_empty() {
            return if send(self.replies, self.backlog, output) { Ok((None, None)) } else { Err(()) };
        }
        let db = self.db;
        let mut ks = db.lock();
        let mut ctx = Ctx::new(db, &mut ks, session, now_ms());
        ctx.mailbox = Some(self.mailbox.clone());
        let mut ran = 0u64;
        let mut blocked = None;
        let mut attach = None;
        while let Some(args) = pending.pop_front() {
            let reply = cmd::execute(&mut ctx, &args);
            ran += 1;
            if ctx.session.send_store_fd {
                // Goes out alone, with the descriptor.
                attach = Some(reply);
                break;
            }
            if let Some(parked) = ctx.blocked.take() {
                blocked = Some(parked);
                break;
            }
            reply.encode(output);
            if ctx.session.closing {
                pending.clear();
                break;
            }
            if output.len() > MAX_BATCH_OUTPUT {
                // The rest waits until the client takes these replies.
                break;
            }
        }
        let sent = send(self.replies, self.backlog, output);
        drop(ks);
        db.counters().total_commands_processed.fetch_add(ran, Ordering::Relaxed);
        if sent {
            Ok((blocked, attach))
        } else {
            Err(())
        }
    }
}

async fn write_replies<W: AsyncWrite>(writer: W, mut queue: mpsc::UnboundedReceiver<Bytes>, backlog: Arc<Backlog>) {
    tokio::pin!(writer);
    while let Some(mut chunk) = queue.recv().await {
        // Coalesce whatever else is already queued into one write.
        let mut extra = Vec::new();
        while let Ok(more) = queue.try_recv() {
            extra.push(more);
        }
        if !extra.is_empty() {
            let mut joined = BytesMut::from(&chunk[..]);
            for more in &extra {
                joined.extend_from_slice(more);
            }
            chunk = joined.freeze();
        }
        let len = chunk.len();
        let written = writer.write_all(&chunk).await;
        backlog.sub(len);
        backlog.drained.notify_one();
        if written.is_err() {
            // The client is gone; keep draining so the reader is never parked.
            queue.close();
            while let Some(rest) = queue.recv().await {
                backlog.sub(rest.len());
            }
            backlog.drained.notify_one();
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// The reply to an in-process command: ready now, or to be awaited.
pub enum LocalReply {
    Ready(Frame),
    Blocked(Blocked),
}

/// Runs one command for a caller inside the broker's process (the primary's
/// JS thread): the same dispatch as a socket client, under the same lock.
pub fn execute_local(db: &Db, session: &mut Session, args: &[Bytes]) -> LocalReply {
    let (reply, blocked) = {
        let mut ks = db.lock();
        let mut ctx = Ctx::new(db, &mut ks, session, now_ms());
        let reply = cmd::execute(&mut ctx, args);
        (reply, ctx.blocked.take())
    };
    db.counters().total_commands_processed.fetch_add(1, Ordering::Relaxed);
    match blocked {
        Some(blocked) => LocalReply::Blocked(blocked),
        None => LocalReply::Ready(reply),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::DuplexStream;

    use super::*;

    async fn connect(db: &Db, shutdown: &watch::Receiver<bool>) -> DuplexStream {
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(theirs, None, db.clone(), shutdown.clone()));
        ours
    }

    async fn send(stream: &mut DuplexStream, args: &[&str]) {
        let frame = Frame::Array(args.iter().map(|a| Frame::bulk(a.to_string())).collect());
        stream.write_all(&frame.to_bytes()).await.unwrap();
    }

    /// Reads exactly the bytes expected and compares them.
    async fn expect(stream: &mut DuplexStream, expected: &[u8]) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
    }

    async fn call(stream: &mut DuplexStream, args: &[&str], reply: &[u8]) {
        send(stream, args).await;
        expect(stream, reply).await;
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test]
    async fn an_async_lock_wait_leaves_its_connection_free_and_pushes_its_outcome() {
        let db = Db::new();
        let (_stop, shutdown) = watch::channel(false);
        let mut holder = connect(&db, &shutdown).await;
        let mut waiter = connect(&db, &shutdown).await;
        call(&mut holder, &["SHM.LOCK", "l", "ta", "60000"], b":1\r\n").await;
        call(&mut waiter, &["SHM.LOCK", "l", "tb", "60000", "WAIT", "5000", "ASYNC"], b"+QUEUED\r\n").await;
        // The connection serves other commands, and other waits, meanwhile.
        call(&mut waiter, &["PING"], b"+PONG\r\n").await;
        call(&mut waiter, &["SHM.LOCK", "l", "tc", "60000", "WAIT", "20", "ASYNC"], b"+QUEUED\r\n").await;
        call(&mut waiter, &["SHM.LOCK", "l", "td", "60000", "WAIT", "5000", "ASYNC"], b"+QUEUED\r\n").await;
        call(&mut waiter, &["SHM.LOCK", "free", "te", "60000", "WAIT", "5000", "ASYNC"], b":2\r\n").await;
        expect(&mut waiter, b">4\r\n$8\r\nshm.lock\r\n$1\r\nl\r\n$2\r\ntc\r\n$-1\r\n").await;
        // Unlocking with the token of a queued wait withdraws it.
        call(&mut waiter, &["SHM.UNLOCK", "l", "td"], b":0\r\n>4\r\n$8\r\nshm.lock\r\n$1\r\nl\r\n$2\r\ntd\r\n$-1\r\n")
            .await;
        call(&mut holder, &["SHM.UNLOCK", "l", "ta"], b":1\r\n").await;
        expect(&mut waiter, b">4\r\n$8\r\nshm.lock\r\n$1\r\nl\r\n$2\r\ntb\r\n:3\r\n").await;
        // The lock belongs to the connection that waited: it goes with it.
        assert_eq!(db.lock().locks.held(), 2);
        drop(waiter);
        eventually("the waiter's locks released", || db.lock().locks.held() == 0).await;
    }

    #[tokio::test]
    async fn a_connection_with_pushes_subscribes_and_keeps_running_commands() {
        let db = Db::new();
        let (_stop, shutdown) = watch::channel(false);
        let mut both = connect(&db, &shutdown).await;
        let mut publisher = connect(&db, &shutdown).await;
        call(&mut both, &["SHM.PUSHES", "ON"], b"+OK\r\n").await;
        call(&mut both, &["SUBSCRIBE", "news"], b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n").await;
        call(&mut both, &["PSUBSCRIBE", "n*"], b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:2\r\n").await;
        call(&mut both, &["SET", "k", "v"], b"+OK\r\n").await;
        call(&mut both, &["PING"], b"+PONG\r\n").await;
        call(&mut publisher, &["PUBLISH", "news", "hi"], b":2\r\n").await;
        expect(&mut both, b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n").await;
        expect(&mut both, b">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n").await;
        call(&mut both, &["GET", "k"], b"$1\r\nv\r\n").await;
        call(
            &mut both,
            &["SHM.PUSHES", "OFF"],
            b"-ERR SHM.PUSHES cannot change while this connection is subscribed: unsubscribe first\r\n",
        )
        .await;
        call(&mut both, &["UNSUBSCRIBE", "news"], b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n").await;
        call(&mut both, &["PUNSUBSCRIBE", "n*"], b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n").await;
        call(&mut both, &["SHM.PUSHES", "OFF"], b"+OK\r\n").await;
        // Back to RESP2's subscribed mode.
        call(&mut both, &["SUBSCRIBE", "news"], b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n").await;
        call(&mut both, &["GET", "k"], b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n").await;
    }

    /// Past the output limit a connection with pushes loses messages, not
    /// its calls: it stays, and is told before the next message it gets.
    #[tokio::test]
    async fn a_connection_with_pushes_that_falls_behind_loses_messages_and_is_told() {
        let db = Db::new();
        db.lock().pubsub.output_limit = 200;
        let (_stop, shutdown) = watch::channel(false);
        // A socket buffer of 16 bytes: what the client does not read stays in the broker's backlog.
        let (mut slow, theirs) = tokio::io::duplex(16);
        tokio::spawn(serve(theirs, None, db.clone(), shutdown.clone()));
        let mut publisher = connect(&db, &shutdown).await;
        call(&mut slow, &["SHM.PUSHES", "ON"], b"+OK\r\n").await;
        call(&mut slow, &["SUBSCRIBE", "c"], b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n").await;
        let payload = "p".repeat(100);
        for _ in 0..3 {
            call(&mut publisher, &["PUBLISH", "c", &payload], b":1\r\n").await;
        }
        // The first fit; the other two would have passed the limit.
        let message = format!(">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$100\r\n{payload}\r\n");
        expect(&mut slow, message.as_bytes()).await;
        let backlog = db.counters().output_buffer_bytes.clone();
        eventually("the backlog written", || backlog.load(Ordering::Acquire) == 0).await;
        call(&mut publisher, &["PUBLISH", "c", "last"], b":1\r\n").await;
        expect(
            &mut slow,
            b">2\r\n$10\r\nshm.missed\r\n$8\r\noverflow\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\nlast\r\n",
        )
        .await;
        // Its commands ran all along.
        call(&mut slow, &["PING"], b"+PONG\r\n").await;
    }

    /// The bytes Redis 7.0.15 sends, checked against redis-server.
    #[tokio::test]
    async fn invalidations_reach_the_redirect_client_byte_for_byte() {
        let db = Db::new();
        let (_stop, shutdown) = watch::channel(false);
        let mut sub = connect(&db, &shutdown).await;
        call(&mut sub, &["CLIENT", "ID"], b":1\r\n").await;
        let mut tracker = connect(&db, &shutdown).await;
        call(&mut tracker, &["CLIENT", "ID"], b":2\r\n").await;
        let mut writer = connect(&db, &shutdown).await;
        call(&mut writer, &["CLIENT", "ID"], b":3\r\n").await;

        call(
            &mut sub,
            &["SUBSCRIBE", "__redis__:invalidate"],
            b"*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n",
        )
        .await;
        call(&mut tracker, &["CLIENT", "TRACKING", "ON", "REDIRECT", "1"], b"+OK\r\n").await;
        call(&mut tracker, &["GET", "foo"], b"$-1\r\n").await;
        call(&mut writer, &["SET", "foo", "1"], b"+OK\r\n").await;
        expect(&mut sub, b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$3\r\nfoo\r\n").await;
        call(&mut tracker, &["GET", "foo"], b"$1\r\n1\r\n").await;
        call(&mut writer, &["FLUSHDB"], b"+OK\r\n").await;
        expect(&mut sub, b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n").await;

        // The redirect client hangs up: the tracking client's keys go.
        call(&mut tracker, &["GET", "bar"], b"$-1\r\n").await;
        assert_eq!(db.lock().tracking.key_count(), 1);
        drop(sub);
        eventually("keys dropped with the redirect client", || db.lock().tracking.key_count() == 0).await;
        call(&mut tracker, &["CLIENT", "GETREDIR"], b":1\r\n").await;
        call(
            &mut tracker,
            &["CLIENT", "TRACKING", "ON", "REDIRECT", "1"],
            b"-ERR The client ID you want redirect to does not exist\r\n",
        )
        .await;
        // The tracking client hangs up: nothing is left.
        drop(tracker);
        eventually("tracking client forgotten", || db.lock().tracking.client_count() == 0).await;
        assert!(!db.lock().tracking.is_connected(2));
        assert!(db.lock().tracking.is_connected(3));
    }
}

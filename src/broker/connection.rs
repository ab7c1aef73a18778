//! One client connection: decode commands, run them against the store and
//! send the replies, reading and writing at the same time.
//!
//! The read side parses every complete command in its buffer, runs the batch
//! under one store lock and hands the encoded replies to a writer task. It
//! keeps reading while the writer writes, so a client that pipelines large
//! values never deadlocks against its own replies; it pauses only when the
//! replies not yet taken by the client pass a high-water mark.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

use crate::cmd::{self, Blocked, Ctx, Session};
use crate::resp::{parse_command, Frame, Limits};
use crate::store::{now_ms, Db};

/// Replies waiting for the client above which the broker stops reading
/// from it until the client catches up.
const OUTPUT_HIGH_WATER: usize = 16 * 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;
/// Input read ahead while a command is blocked, before reading pauses.
const MAX_INPUT_WHILE_BLOCKED: usize = 1024 * 1024;

/// Bytes handed to the writer and not yet written, shared by both halves.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    drained: Notify,
}

pub async fn serve<S>(stream: S, db: Db, limits: Limits, mut shutdown: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let backlog = Arc::new(Backlog::default());
    let (replies, queue) = mpsc::unbounded_channel::<Bytes>();
    let writer_task = tokio::spawn(write_replies(writer, queue, backlog.clone()));

    let mut session = Session::new(db.counters().next_client_id());
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::new();
    let mut pending: VecDeque<Vec<Bytes>> = VecDeque::new();
    let mut fatal: Option<Frame> = None;
    'serve: loop {
        while backlog.bytes.load(Ordering::Acquire) > OUTPUT_HIGH_WATER {
            tokio::select! {
                _ = backlog.drained.notified() => {}
                _ = shutdown.changed() => break 'serve,
            }
        }
        input.reserve(READ_CHUNK);
        let read = tokio::select! {
            read = reader.read_buf(&mut input) => read,
            _ = shutdown.changed() => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        parse_commands(&mut input, &limits, &mut pending, &mut fatal);

        // Run what has arrived; a blocking command parks the rest (as in
        // Redis) until its reply is ready.
        loop {
            let blocked = run_batch(&db, &mut session, &mut pending, &mut output);
            if !send(&replies, &backlog, &mut output) {
                break 'serve;
            }
            let Some(blocked) = blocked else { break };
            let reply = tokio::select! {
                reply = blocked.reply(&db) => reply,
                _ = watch_for_eof(&mut reader, &mut input) => break 'serve,
                _ = shutdown.changed() => break 'serve,
            };
            reply.encode(&mut output);
            parse_commands(&mut input, &limits, &mut pending, &mut fatal);
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
    // The client is gone or done: its locks pass on and its waits end.
    db.lock().locks.release_client(session.id, now_ms());
    // Dropping the sender lets the writer flush what is queued, then close.
    drop(replies);
    let _ = writer_task.await;
}

/// Moves every complete command from `input` to `pending`; a protocol error
/// ends parsing (the commands before it still run).
fn parse_commands(
    input: &mut BytesMut,
    limits: &Limits,
    pending: &mut VecDeque<Vec<Bytes>>,
    fatal: &mut Option<Frame>,
) {
    while fatal.is_none() {
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
    backlog.bytes.fetch_add(chunk.len(), Ordering::AcqRel);
    replies.send(chunk).is_ok()
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

/// Runs queued commands in arrival order under one store lock and encodes
/// their replies. Stops at a blocking command (returned, its reply to be
/// awaited) and after QUIT.
fn run_batch(
    db: &Db,
    session: &mut Session,
    pending: &mut VecDeque<Vec<Bytes>>,
    output: &mut BytesMut,
) -> Option<Blocked> {
    if pending.is_empty() {
        return None;
    }
    let mut ks = db.lock();
    let mut ctx = Ctx::new(db, &mut ks, session, now_ms());
    let mut ran = 0u64;
    let mut blocked = None;
    while let Some(args) = pending.pop_front() {
        let reply = cmd::execute(&mut ctx, &args);
        ran += 1;
        if let Some(parked) = ctx.blocked.take() {
            blocked = Some(parked);
            break;
        }
        reply.encode(output);
        if ctx.session.closing {
            pending.clear();
            break;
        }
    }
    drop(ks);
    db.counters().total_commands_processed.fetch_add(ran, Ordering::Relaxed);
    blocked
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
        backlog.bytes.fetch_sub(len, Ordering::AcqRel);
        backlog.drained.notify_one();
        if written.is_err() {
            // The client is gone; keep draining so the reader is never parked.
            queue.close();
            while let Some(rest) = queue.recv().await {
                backlog.bytes.fetch_sub(rest.len(), Ordering::AcqRel);
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

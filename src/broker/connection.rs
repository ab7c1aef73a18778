//! One client connection: decode commands, run them against the store and
//! send the replies, reading and writing at the same time.
//!
//! The read side parses every complete command in its buffer, runs the batch
//! under one store lock and hands the encoded replies to a writer task. It
//! keeps reading while the writer writes, so a client that pipelines large
//! values never deadlocks against its own replies; it pauses only when the
//! replies not yet taken by the client pass a high-water mark.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Notify};

use crate::cmd::{self, Ctx, Session};
use crate::resp::{parse_command, Frame, Limits};
use crate::store::{now_ms, Db};

/// Replies waiting for the client above which the broker stops reading
/// from it until the client catches up.
const OUTPUT_HIGH_WATER: usize = 16 * 1024 * 1024;
const READ_CHUNK: usize = 16 * 1024;

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
    let mut commands: Vec<Vec<Bytes>> = Vec::new();
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

        let mut fatal = None;
        loop {
            match parse_command(&mut input, &limits) {
                Ok(Some(args)) if args.is_empty() => continue,
                Ok(Some(args)) => commands.push(args),
                Ok(None) => break,
                Err(error) => {
                    fatal = Some(error.reply());
                    break;
                }
            }
        }
        if !commands.is_empty() {
            run_batch(&db, &mut session, &mut commands, &mut output);
        }
        if let Some(reply) = fatal {
            reply.encode(&mut output);
            session.closing = true;
        }
        if !output.is_empty() {
            let chunk = output.split().freeze();
            backlog.bytes.fetch_add(chunk.len(), Ordering::AcqRel);
            if replies.send(chunk).is_err() {
                break;
            }
        }
        if session.closing {
            break;
        }
    }
    // Dropping the sender lets the writer flush what is queued, then close.
    drop(replies);
    let _ = writer_task.await;
}

/// Runs commands in arrival order under one store lock and encodes their
/// replies. Commands after a QUIT are not run.
fn run_batch(db: &Db, session: &mut Session, commands: &mut Vec<Vec<Bytes>>, output: &mut BytesMut) {
    let mut ks = db.lock();
    let mut ctx = Ctx { db, ks: &mut ks, session, now: now_ms() };
    let mut ran = 0u64;
    for args in commands.drain(..) {
        if ctx.session.closing {
            break;
        }
        cmd::execute(&mut ctx, &args).encode(output);
        ran += 1;
    }
    drop(ks);
    db.counters().total_commands_processed.fetch_add(ran, Ordering::Relaxed);
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

/// Runs one command for a caller inside the broker's process (the primary's
/// JS thread): the same dispatch as a socket client, under the same lock.
pub fn execute_local(db: &Db, session: &mut Session, args: &[Bytes]) -> Frame {
    let reply = {
        let mut ks = db.lock();
        let mut ctx = Ctx { db, ks: &mut ks, session, now: now_ms() };
        cmd::execute(&mut ctx, args)
    };
    db.counters().total_commands_processed.fetch_add(1, Ordering::Relaxed);
    reply
}

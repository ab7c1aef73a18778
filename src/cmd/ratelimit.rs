//! Rate limiting, atomic in the broker (this broker's own command):
//!
//! `SHM.RATELIMIT key points window-ms [SLIDING]` takes one point from the
//! key's budget of `points` per window and replies
//! `[allowed (1|0), remaining, ms until a point frees up]`.
//!
//! A fixed window is a counter that expires with the window. A sliding
//! window weighs the previous window's count by how much of it still
//! overlaps (the two-window approximation), so a burst at a window edge
//! cannot pass twice the budget. The state is an ordinary string key, so
//! `TTL`, `GET` and `DEL` work on it.

use bytes::Bytes;

use super::{int_arg, is, syntax_error, try_reply, CommandSpec, Ctx};
use crate::resp::Frame;
use crate::store::Expiry;

#[rustfmt::skip]
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec { name: "shm.ratelimit", arity: -4, flags: &["write", "denyoom", "fast"], keys: (1, 1, 1), group: "cluster-shm", since: "0.1.0", summary: "Takes a point from a key's rate limit budget (fixed or sliding window).", run: ratelimit },
];

fn ratelimit(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Frame {
    let key = &args[1];
    let points = try_reply!(int_arg(&args[2]));
    let window = try_reply!(int_arg(&args[3]));
    // Bounded so that deadlines (now + 2 windows) stay far from overflow.
    if points < 1 || !(1..=i64::MAX / 4).contains(&window) {
        return Frame::error("ERR points and window must be positive integers");
    }
    let sliding = match &args[4..] {
        [] => false,
        [option] if is(option, "SLIDING") => true,
        _ => return syntax_error(),
    };
    let (points, window, now) = (points as u64, window as u64, ctx.now);
    let stored = ctx.ks.get(key, now).map(|e| (e.value().to_vec(), e.expires_at()));
    let reply = |allowed: bool, remaining: u64, reset: u64| {
        Frame::Array(vec![
            Frame::Integer(allowed as i64),
            Frame::Integer(remaining as i64),
            Frame::Integer(reset as i64),
        ])
    };
    if !sliding {
        let (count, expires_at) = match &stored {
            Some((text, Some(at))) => match std::str::from_utf8(text).ok().and_then(|t| t.parse::<u64>().ok()) {
                Some(count) => (count, *at),
                None => return Frame::error("WRONGTYPE the key does not hold a rate limit"),
            },
            Some(_) => return Frame::error("WRONGTYPE the key does not hold a rate limit"),
            None => (0, now + window),
        };
        let reset = expires_at.saturating_sub(now);
        if count >= points {
            return reply(false, 0, reset);
        }
        ctx.ks.set(key, (count + 1).to_string().as_bytes(), Expiry::At(expires_at), now);
        return reply(true, points - count - 1, reset);
    }

    // Sliding: "start:current:previous", with start the current window's start.
    let (mut start, mut current, mut previous) = (now - now % window, 0u64, 0u64);
    if let Some((text, _)) = &stored {
        let fields: Vec<u64> = match std::str::from_utf8(text) {
            Ok(t) => t.split(':').filter_map(|f| f.parse().ok()).collect(),
            Err(_) => Vec::new(),
        };
        let [stored_start, stored_current, stored_previous] = fields[..] else {
            return Frame::error("WRONGTYPE the key does not hold a rate limit");
        };
        // A start in the future (the clock stepped back, or the key was
        // written by hand) counts as the current window.
        let stored_start = stored_start.min(start);
        if now < stored_start.saturating_add(window) {
            (start, current, previous) = (stored_start, stored_current, stored_previous);
        } else if now < stored_start.saturating_add(2 * window) {
            (current, previous) = (0, stored_current);
        }
    }
    let elapsed = now.saturating_sub(start).min(window);
    let overlap = (window - elapsed) as f64 / window as f64;
    let used = previous as f64 * overlap + current as f64;
    if used + 1.0 > points as f64 {
        // The previous window's weight fades; a point frees up when it has
        // faded by the excess, or at the latest when this window ends.
        let excess = used + 1.0 - points as f64;
        let wait =
            if previous > 0 { (excess / previous as f64 * window as f64).ceil() as u64 } else { window - elapsed };
        return reply(false, 0, wait.min(window - elapsed).max(1));
    }
    current += 1;
    let state = format!("{start}:{current}:{previous}");
    ctx.ks.set(key, state.as_bytes(), Expiry::At(start + 2 * window), now);
    let remaining = (points as f64 - used - 1.0).floor().max(0.0) as u64;
    reply(true, remaining, window - elapsed)
}

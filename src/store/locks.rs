//! Named locks with first-come-first-served waiters.
//!
//! A lock belongs to the client (connection) that acquired it and is known by
//! the random token that client chose; only that token releases or extends
//! it. When a holder releases, disconnects or lets its ttl pass, the lock is
//! handed straight to the oldest waiter, which is woken through its channel:
//! nobody polls.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use tokio::sync::oneshot;

/// What a waiter receives when the lock is handed to it: its fencing token.
pub type Grant = oneshot::Receiver<u64>;

#[derive(Debug)]
struct Holder {
    client: u64,
    token: Bytes,
    fence: u64,
    expires_at: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    client: u64,
    token: Bytes,
    ttl: u64,
    grant: oneshot::Sender<u64>,
}

#[derive(Debug, Default)]
struct Lock {
    holder: Option<Holder>,
    waiters: VecDeque<Waiter>,
}

#[derive(Debug)]
pub enum Acquire {
    /// Held by the caller now, with this fencing token.
    Granted(u64),
    /// Someone else holds it.
    Busy,
}

#[derive(Debug, Default)]
pub struct LockTable {
    locks: HashMap<Bytes, Lock>,
    /// Strictly increasing across grants, so a holder can prove it is newer.
    next_fence: u64,
    next_waiter: u64,
}

impl LockTable {
    /// Locks currently held.
    pub fn held(&self) -> usize {
        self.locks.values().filter(|l| l.holder.is_some()).count()
    }

    /// Clients queued behind held locks.
    pub fn waiting(&self) -> usize {
        self.locks.values().map(|l| l.waiters.len()).sum()
    }

    /// Takes the lock if it is free (or already held with this token, which
    /// renews its ttl).
    pub fn try_acquire(&mut self, name: &[u8], client: u64, token: &Bytes, ttl: u64, now: u64) -> Acquire {
        self.expire_one(name, now);
        let fence = self.next_fence + 1;
        let lock = self.locks.entry(Bytes::copy_from_slice(name)).or_default();
        match &mut lock.holder {
            Some(holder) if holder.token == *token => {
                holder.expires_at = now.saturating_add(ttl);
                Acquire::Granted(holder.fence)
            }
            Some(_) => Acquire::Busy,
            None => {
                self.next_fence = fence;
                lock.holder = Some(Holder { client, token: token.clone(), fence, expires_at: now.saturating_add(ttl) });
                Acquire::Granted(fence)
            }
        }
    }

    /// Queues the caller behind the current holder. The returned id cancels
    /// the wait; the receiver gets the fencing token when the lock is handed
    /// over.
    pub fn enqueue(&mut self, name: &[u8], client: u64, token: &Bytes, ttl: u64) -> (u64, Grant) {
        self.next_waiter += 1;
        let id = self.next_waiter;
        let (grant, receiver) = oneshot::channel();
        let lock = self.locks.entry(Bytes::copy_from_slice(name)).or_default();
        lock.waiters.push_back(Waiter { id, client, token: token.clone(), ttl, grant });
        (id, receiver)
    }

    /// Withdraws a waiter; false when it is no longer queued (it was granted
    /// the lock in the meantime, or its lock is gone).
    pub fn cancel(&mut self, name: &[u8], waiter: u64) -> bool {
        let Some(lock) = self.locks.get_mut(name) else { return false };
        let before = lock.waiters.len();
        lock.waiters.retain(|w| w.id != waiter);
        let removed = lock.waiters.len() != before;
        self.forget_if_idle(name);
        removed
    }

    /// Releases the lock if `token` holds it, handing it to the next waiter;
    /// a wait queued with `token` is withdrawn (its grant is dropped).
    pub fn release(&mut self, name: &[u8], token: &[u8], now: u64) -> bool {
        let Some(lock) = self.locks.get_mut(name) else { return false };
        if lock.holder.as_ref().is_none_or(|h| h.token != token) {
            lock.waiters.retain(|w| w.token != token);
            self.forget_if_idle(name);
            return false;
        }
        lock.holder = None;
        self.hand_over(name, now);
        true
    }

    /// Pushes the ttl of a held lock to `now + ttl`; false if `token` does
    /// not hold it.
    pub fn extend(&mut self, name: &[u8], token: &[u8], ttl: u64, now: u64) -> bool {
        self.expire_one(name, now);
        match self.locks.get_mut(name).and_then(|l| l.holder.as_mut()) {
            Some(holder) if holder.token == token => {
                holder.expires_at = now.saturating_add(ttl);
                true
            }
            _ => false,
        }
    }

    /// A client went away: its locks pass on at once, its waits end.
    pub fn release_client(&mut self, client: u64, now: u64) {
        let names: Vec<Bytes> = self.locks.keys().cloned().collect();
        for name in names {
            let Some(lock) = self.locks.get_mut(&name) else { continue };
            lock.waiters.retain(|w| w.client != client);
            if lock.holder.as_ref().is_some_and(|h| h.client == client) {
                lock.holder = None;
                self.hand_over(&name, now);
            } else {
                self.forget_if_idle(&name);
            }
        }
    }

    /// Releases every lock whose ttl has passed; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let due: Vec<Bytes> = self
            .locks
            .iter()
            .filter(|(_, l)| l.holder.as_ref().is_some_and(|h| h.expires_at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &due {
            self.expire_one(name, now);
        }
        due.len()
    }

    fn expire_one(&mut self, name: &[u8], now: u64) {
        let Some(lock) = self.locks.get_mut(name) else { return };
        if lock.holder.as_ref().is_some_and(|h| h.expires_at <= now) {
            lock.holder = None;
            self.hand_over(name, now);
        }
    }

    /// Gives a free lock to the oldest waiter still listening.
    fn hand_over(&mut self, name: &[u8], now: u64) {
        let Some(lock) = self.locks.get_mut(name) else { return };
        while let Some(waiter) = lock.waiters.pop_front() {
            let fence = self.next_fence + 1;
            if waiter.grant.send(fence).is_ok() {
                self.next_fence = fence;
                lock.holder = Some(Holder {
                    client: waiter.client,
                    token: waiter.token,
                    fence,
                    expires_at: now.saturating_add(waiter.ttl),
                });
                return;
            }
        }
        self.forget_if_idle(name);
    }

    fn forget_if_idle(&mut self, name: &[u8]) {
        if self.locks.get(name).is_some_and(|l| l.holder.is_none() && l.waiters.is_empty()) {
            self.locks.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Bytes {
        Bytes::copy_from_slice(t.as_bytes())
    }

    fn granted(a: Acquire) -> u64 {
        match a {
            Acquire::Granted(f) => f,
            Acquire::Busy => panic!("expected the lock to be granted"),
        }
    }

    #[test]
    fn only_the_holder_token_releases_or_extends() {
        let mut t = LockTable::default();
        let f1 = granted(t.try_acquire(b"l", 1, &token("a"), 1000, 0));
        assert!(matches!(t.try_acquire(b"l", 2, &token("b"), 1000, 0), Acquire::Busy));
        assert!(!t.release(b"l", b"b", 0));
        assert!(!t.extend(b"l", b"b", 5000, 0));
        assert!(t.extend(b"l", b"a", 5000, 0));
        // Re-acquiring with the same token renews, with the same fence.
        assert_eq!(granted(t.try_acquire(b"l", 1, &token("a"), 1000, 0)), f1);
        assert!(t.release(b"l", b"a", 0));
        assert!(!t.release(b"l", b"a", 0));
        assert_eq!(t.held(), 0);
        assert!(granted(t.try_acquire(b"l", 2, &token("b"), 1000, 0)) > f1);
    }

    #[test]
    fn waiters_are_served_first_come_first_served() {
        let mut t = LockTable::default();
        granted(t.try_acquire(b"l", 1, &token("a"), 1000, 0));
        let (_, mut second) = t.enqueue(b"l", 2, &token("b"), 1000);
        let (_, mut third) = t.enqueue(b"l", 3, &token("c"), 1000);
        assert!(second.try_recv().is_err());
        assert!(t.release(b"l", b"a", 0));
        let fence_b = second.try_recv().expect("second is woken first");
        assert!(third.try_recv().is_err());
        assert!(t.release(b"l", b"b", 0));
        assert!(third.try_recv().expect("then third") > fence_b);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn a_departed_waiter_is_skipped() {
        let mut t = LockTable::default();
        granted(t.try_acquire(b"l", 1, &token("a"), 1000, 0));
        let (_, gone) = t.enqueue(b"l", 2, &token("b"), 1000);
        let (_, mut next) = t.enqueue(b"l", 3, &token("c"), 1000);
        drop(gone);
        t.release(b"l", b"a", 0);
        assert!(next.try_recv().is_ok());
    }

    #[test]
    fn a_disconnecting_holder_hands_over_at_once() {
        let mut t = LockTable::default();
        granted(t.try_acquire(b"x", 1, &token("a"), 60_000, 0));
        granted(t.try_acquire(b"y", 1, &token("a2"), 60_000, 0));
        let (_, mut waiter) = t.enqueue(b"x", 2, &token("b"), 1000);
        let (_, _own_wait) = t.enqueue(b"z", 1, &token("q"), 1000);
        t.release_client(1, 10);
        assert!(waiter.try_recv().is_ok());
        assert_eq!(t.held(), 1);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn ttl_releases_and_hands_over() {
        let mut t = LockTable::default();
        granted(t.try_acquire(b"l", 1, &token("a"), 100, 0));
        let (_, mut waiter) = t.enqueue(b"l", 2, &token("b"), 100);
        assert_eq!(t.expire(99), 0);
        assert_eq!(t.expire(100), 1);
        assert!(waiter.try_recv().is_ok());
        // The new holder's ttl counts from the hand-over.
        assert_eq!(t.expire(150), 0);
        assert!(!t.extend(b"l", b"a", 100, 150));
        // An expired holder does not block a new caller either.
        assert!(matches!(t.try_acquire(b"l", 3, &token("c"), 100, 250), Acquire::Granted(_)));
    }

    #[test]
    fn unlocking_with_a_waiting_token_withdraws_the_wait() {
        let mut t = LockTable::default();
        granted(t.try_acquire(b"l", 1, &token("a"), 100, 0));
        let (_, mut withdrawn) = t.enqueue(b"l", 2, &token("b"), 100);
        let (_, mut next) = t.enqueue(b"l", 3, &token("c"), 100);
        assert!(!t.release(b"l", b"b", 0));
        assert_eq!(t.waiting(), 1);
        assert_eq!(withdrawn.try_recv(), Err(oneshot::error::TryRecvError::Closed));
        assert!(t.release(b"l", b"a", 0));
        assert!(next.try_recv().is_ok());
    }

    #[test]
    fn cancelled_waiters_leave_no_trace() {
        let mut t = LockTable::default();
        granted(t.try_acquire(b"l", 1, &token("a"), 100, 0));
        let (id, _rx) = t.enqueue(b"l", 2, &token("b"), 100);
        assert!(t.cancel(b"l", id));
        assert!(!t.cancel(b"l", id));
        t.release(b"l", b"a", 0);
        assert!(t.locks.is_empty());
    }
}

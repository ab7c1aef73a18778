'use strict';

const { CODES, shmError, typeError } = require('./errors');
const { checkTtl } = require('./options');

/** The longest delay setTimeout takes. */
const MAX_TIMER = 2 ** 31 - 1;

/**
 * A held lock. Only this handle's random token can release or extend it;
 * the broker hands it to the next waiter on release, when the holder's
 * connection closes (the process died), or when its ttl passes.
 *
 * On Redis a lock is a lease of `lease` ms that this handle renews while
 * its process lives, until the ttl passes: a holder that dies keeps the
 * lock at most `lease` ms longer.
 */
class Lock {
  #call;
  #token;
  #lease;
  #deadline = 0;
  #keepAlive = null;
  #expiry = null;
  #onRelease;

  /**
   * `onRelease` runs once, when this handle releases the lock, learns it
   * lost it, or its ttl (`ttl` ms from now) passes without an extension.
   */
  constructor(call, name, token, fence, { ttl, lease, onRelease = () => {} } = {}) {
    this.#call = call;
    this.#token = token;
    this.#lease = lease;
    this.#onRelease = onRelease;
    this.#expireAt(Date.now() + ttl);
    if (lease !== undefined) this.#renewUntil(Date.now() + ttl);
    /** The lock's name. */
    this.name = name;
    /**
     * Fencing token: strictly increasing across grants, so a resource can
     * refuse writes from a holder whose lock has passed to someone newer.
     */
    this.fence = fence;
  }

  /** Releases the lock; false when it was no longer held by this handle. */
  async release() {
    this.#stopKeepAlive();
    try {
      return (await this.#call(['SHM.UNLOCK', this.name, this.#token])) === 1;
    } finally {
      this.#released();
    }
  }

  /**
   * Releases the lock at the end of an `await using` scope:
   * `await using lock = await shm.lock('x')`.
   */
  async [Symbol.asyncDispose]() {
    await this.release();
  }

  /** Sets the ttl to `ttl` ms from now; false when no longer held. */
  async extend(ttl) {
    if (ttl === undefined) throw typeError('extend: ttl is required');
    const ms = checkTtl(ttl, 'extend');
    const held = (await this.#call(['SHM.EXTEND', this.name, this.#token, String(this.#lease === undefined ? ms : Math.min(ms, this.#lease))])) === 1;
    if (!held) {
      this.#stopKeepAlive();
      this.#released();
      return false;
    }
    this.#expireAt(Date.now() + ms);
    if (this.#lease !== undefined) this.#renewUntil(Date.now() + ms);
    return true;
  }

  #released() {
    clearTimeout(this.#expiry);
    const onRelease = this.#onRelease;
    this.#onRelease = () => {};
    onRelease();
  }

  /**
   * Counts the lock as gone at `deadline` unless it is extended before:
   * the broker lets it expire then (on Redis, renewals stop then), release()
   * or not. Measured from the reply, so never before the broker's ttl ends.
   * A timer cannot wait more than 2^31 - 1 ms: a longer one is set again.
   */
  #expireAt(deadline) {
    clearTimeout(this.#expiry);
    const left = deadline - Date.now();
    if (left <= 0) {
      this.#stopKeepAlive();
      this.#released();
      return;
    }
    this.#expiry = setTimeout(() => this.#expireAt(deadline), Math.min(left, MAX_TIMER));
    this.#expiry.unref();
  }

  /** Renews the lease every third of it until `deadline`; the timer does not keep the process alive. */
  #renewUntil(deadline) {
    this.#deadline = deadline;
    if (this.#keepAlive !== null) return;
    this.#keepAlive = setInterval(() => {
      const left = this.#deadline - Date.now();
      if (left <= 0) return this.#stopKeepAlive();
      this.#call(['SHM.EXTEND', this.name, this.#token, String(Math.min(left, this.#lease))]).then(
        (held) => {
          if (held !== 1) {
            this.#stopKeepAlive();
            this.#released();
          }
        },
        // A failed renewal is retried at the next tick; the lease covers two more.
        () => {},
      );
    }, Math.max(1, Math.floor(this.#lease / 3)));
    this.#keepAlive.unref();
  }

  #stopKeepAlive() {
    clearInterval(this.#keepAlive);
    this.#keepAlive = null;
  }
}

function lockTimeout(name, timeout) {
  return shmError(CODES.LOCK_TIMEOUT, `lock "${name}" was not acquired within ${timeout} ms`);
}

module.exports = { Lock, lockTimeout };

'use strict';

const { CODES, shmError, typeError } = require('./errors');
const { checkTtl } = require('./options');

/**
 * A held lock. Only this handle's random token can release or extend it;
 * the broker hands it to the next waiter on release, when the holder's
 * connection closes (the process died), or when its ttl passes.
 */
class Lock {
  #call;
  #token;

  constructor(call, name, token, fence) {
    this.#call = call;
    this.#token = token;
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
    return (await this.#call(['SHM.UNLOCK', this.name, this.#token])) === 1;
  }

  /** Sets the ttl to `ttl` ms from now; false when no longer held. */
  async extend(ttl) {
    if (ttl === undefined) throw typeError('extend: ttl is required');
    const ms = checkTtl(ttl, 'extend');
    return (await this.#call(['SHM.EXTEND', this.name, this.#token, String(ms)])) === 1;
  }
}

function lockTimeout(name, timeout) {
  return shmError(CODES.LOCK_TIMEOUT, `lock "${name}" was not acquired within ${timeout} ms`);
}

module.exports = { Lock, lockTimeout };

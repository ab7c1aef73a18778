'use strict';

/**
 * Drop-in surface of the hand-rolled `process.send` pattern: a primary-side
 * `Manager` and a worker-side `User` with callback `set`/`get`, backed by
 * cluster-shm. An app changes only its require lines.
 *
 * Callbacks are called as the classic pattern calls them: `get(key, cb)`
 * calls `cb(value)`, `set(key, value, cb)` calls `cb()`. A failure, which the
 * classic pattern had no way to report, is emitted as an 'error' event on
 * the User (and so thrown if nobody listens), never swallowed.
 */

const { EventEmitter } = require('node:events');
const shm = require('./index.js');

/** The primary's side. cluster-shm's broker started when it was required. */
class Manager {
  constructor() {
    this.shm = shm;
  }
}

class User extends EventEmitter {
  constructor() {
    super();
    this.shm = shm;
  }

  #settle(promise, callback) {
    promise.then(
      (value) => callback && callback(value),
      (error) => this.emit('error', error),
    );
  }

  set(key, value, callback) {
    this.#settle(
      shm.set(key, value).then(() => undefined),
      callback && (() => callback()),
    );
  }

  get(key, callback) {
    this.#settle(shm.get(key), callback);
  }
}

module.exports = { Manager, User, shm };

'use strict';

/**
 * The hand-rolled pattern cluster-shm replaces, kept as a reference and as
 * the baseline of the benchmark: workers `process.send` a
 * `{ method, key, value, uuid }` message, the primary keeps a plain object
 * and answers with `worker.send`, the worker resolves by uuid.
 */

const cluster = require('node:cluster');
const { randomUUID } = require('node:crypto');

class Manager {
  constructor() {
    this.store = {};
    cluster.on('message', (worker, message) => {
      if (!message || message.channel !== 'shared-memory') return;
      const { method, key, value, uuid } = message;
      let result;
      if (method === 'set') this.store[key] = value;
      else if (method === 'get') result = this.store[key];
      worker.send({ channel: 'shared-memory', uuid, value: result });
    });
  }
}

class User {
  constructor() {
    this.callbacks = new Map();
    process.on('message', (message) => {
      if (!message || message.channel !== 'shared-memory') return;
      const callback = this.callbacks.get(message.uuid);
      this.callbacks.delete(message.uuid);
      if (callback) callback(message.value);
    });
  }

  #request(method, key, value, callback) {
    const uuid = randomUUID();
    this.callbacks.set(uuid, callback);
    process.send({ channel: 'shared-memory', method, key, value, uuid });
  }

  set(key, value, callback) {
    this.#request('set', key, value, () => callback && callback());
  }

  get(key, callback) {
    this.#request('get', key, undefined, callback);
  }
}

module.exports = { Manager, User };

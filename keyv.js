'use strict';

/**
 * A Keyv storage adapter on cluster-shm, so every worker of a cluster shares
 * one Keyv store:
 *
 *   const { Keyv } = require('keyv');
 *   const KeyvClusterShm = require('cluster-shm/keyv');
 *   const keyv = new Keyv({ store: new KeyvClusterShm(), namespace: 'cache' });
 *
 * Written to keyv 5's storage adapter interface (the one @keyv/test-suite
 * checks); keyv 6 takes it through its bridge for such adapters. Keyv
 * serializes values itself: the adapter stores what Keyv hands it (a string
 * with Keyv's default serializer) and gives it back unchanged. Expiry is the
 * broker's: a ttl from Keyv becomes the key's ttl in the broker.
 *
 * Keys are `prefix + key`, where Keyv 5 has already put `namespace:` in front
 * of the key: the adapter keeps its keys in the namespace `prefix` of the
 * store (`shm.namespace(prefix)`). `clear()` deletes only the keys of the
 * Keyv namespace in use, or without one, the adapter's; only with `prefix:
 * ''` does it delete every key of the store. Keys are walked with SCAN.
 *
 * Options: `shm` (any cluster-shm handle; default `require('cluster-shm')`),
 * `prefix` (default 'keyv:'; '' for none).
 *
 * One adapter per Keyv instance: Keyv 5 writes its namespace into the adapter
 * (`adapter.namespace`), so two Keyv instances sharing an adapter would share
 * the namespace `clear()` and `iterator()` use.
 */

const { EventEmitter } = require('node:events');
const { globEscape } = require('./lib/glob');

/** Keys fetched per MGET while iterating. */
const ITERATOR_BATCH = 100;


// `namespace` is deliberately not declared (no field, no accessor): Keyv 5
// assigns it, while keyv 6 takes an adapter that has a `namespace` property
// from the start for one that puts the namespace in front of keys by itself,
// and this one leaves that to Keyv.
class KeyvClusterShm extends EventEmitter {
  constructor(options = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw new TypeError('KeyvClusterShm: options must be an object');
    }
    const { shm = require('./index.js'), prefix = 'keyv:' } = options;
    if (typeof prefix !== 'string') throw new TypeError('KeyvClusterShm: prefix must be a string');
    this.shm = shm;
    this.prefix = prefix;
    // The adapter's keys live in a namespace of their own (prefix '' for none).
    this.store = prefix ? shm.namespace(prefix, { separator: '' }) : shm;
    // Keyv 5 reads `opts` and enables `keyv.iterator()` only for adapters
    // whose `opts.dialect` is in its list of iterable stores ('redis' among
    // them); the broker speaks the Redis protocol.
    this.opts = { dialect: 'redis', prefix };
  }

  /** The glob of the keys of a Keyv namespace (or all of this adapter's). */
  #pattern(namespace) {
    return namespace ? `${globEscape(namespace)}:*` : '*';
  }

  async get(key) {
    return this.store.get(key);
  }

  async getMany(keys) {
    if (keys.length === 0) return [];
    return this.#readMany(keys);
  }

  /** One MGET; on a Redis Cluster, where the keys may live in different slots, one GET each. */
  async #readMany(storeKeys) {
    try {
      return await this.store.mget(storeKeys);
    } catch (error) {
      if (error.code !== 'ERR_SHM_CROSSSLOT') throw error;
      return Promise.all(storeKeys.map((key) => this.store.get(key)));
    }
  }

  /** `ttl` in ms as Keyv gives it; none (or 0) keeps the key until deleted. */
  async set(key, value, ttl) {
    const ttlMs = typeof ttl === 'number' && Number.isFinite(ttl) && ttl !== 0 ? ttl : undefined;
    if (ttlMs !== undefined && ttlMs < 0) {
      // Already expired: what a write with a past deadline leaves is no key.
      await this.store.delete(key);
      return true;
    }
    await this.store.set(key, value, ttlMs === undefined ? undefined : { ttl: ttlMs });
    return true;
  }

  async setMany(entries) {
    // Calls made in the same tick go out in one write (one round trip).
    return Promise.all(entries.map(({ key, value, ttl }) => this.set(key, value, ttl)));
  }

  async has(key) {
    return this.store.has(key);
  }

  async hasMany(keys) {
    return Promise.all(keys.map((key) => this.has(key)));
  }

  async delete(key) {
    return this.store.delete(key);
  }

  /** True when every key existed (and is now deleted), as Keyv's own fallback answers. */
  async deleteMany(keys) {
    const deleted = await Promise.all(keys.map((key) => this.delete(key)));
    return deleted.length > 0 && deleted.every(Boolean);
  }

  /**
   * Deletes the keys of this adapter's Keyv namespace, or without one, every
   * key of the adapter's own namespace (every key of the store only with
   * `prefix: ''`). Keys are found with SCAN, not KEYS.
   */
  async clear() {
    if (!this.namespace) return this.store.clear();
    const batch = [];
    for await (const key of this.store.scan(this.#pattern(this.namespace))) batch.push(key);
    await Promise.all(batch.map((key) => this.store.delete(key)));
  }

  /**
   * Yields `[key, value]` for the keys of `namespace` (Keyv passes its own),
   * keys as Keyv wrote them (without the adapter's prefix). Values are read
   * in batches; a key deleted or expired meanwhile is skipped, and so is a
   * value Keyv did not write (Keyv's serializer writes strings; a counter
   * from `shm.incr` under the same prefix is not one).
   */
  async *iterator(namespace) {
    let batch = [];
    for await (const key of this.store.scan(this.#pattern(namespace), { count: ITERATOR_BATCH })) {
      batch.push(key);
      if (batch.length < ITERATOR_BATCH) continue;
      yield* this.#entries(batch);
      batch = [];
    }
    yield* this.#entries(batch);
  }

  /** `[key, value]` for the keys that still hold a string Keyv wrote. */
  async *#entries(keys) {
    if (keys.length === 0) return;
    const values = await this.#readMany(keys);
    for (let i = 0; i < keys.length; i++) if (typeof values[i] === 'string') yield [keys[i], values[i]];
  }

  /**
   * Does nothing: the cluster-shm connection belongs to the whole process
   * (call `shm.close()` to close it).
   */
  async disconnect() {}
}

module.exports = KeyvClusterShm;
// For `import KeyvClusterShm from 'cluster-shm/keyv'` without esModuleInterop,
// and `const { KeyvClusterShm } = require('cluster-shm/keyv')`.
KeyvClusterShm.default = KeyvClusterShm;
KeyvClusterShm.KeyvClusterShm = KeyvClusterShm;

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
 * of the key. `clear()` deletes only the keys of the Keyv namespace (and
 * prefix) in use; only with neither a namespace nor a prefix does it delete
 * every key of the store.
 *
 * Options: `shm` (a cluster-shm instance; default `require('cluster-shm')`),
 * `prefix` (default '').
 *
 * One adapter per Keyv instance: Keyv 5 writes its namespace into the adapter
 * (`adapter.namespace`), so two Keyv instances sharing an adapter would share
 * the namespace `clear()` and `iterator()` use.
 */

const { EventEmitter } = require('node:events');

/** Keys fetched per MGET while iterating. */
const ITERATOR_BATCH = 100;

/** A Redis glob matching `text` literally. */
function globEscape(text) {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

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
    const { shm = require('./index.js'), prefix = '' } = options;
    if (typeof prefix !== 'string') throw new TypeError('KeyvClusterShm: prefix must be a string');
    this.shm = shm;
    this.prefix = prefix;
    // Keyv 5 reads `opts` and enables `keyv.iterator()` only for adapters
    // whose `opts.dialect` is in its list of iterable stores ('redis' among
    // them); the broker speaks the Redis protocol.
    this.opts = { dialect: 'redis', prefix };
  }

  #key(key) {
    return this.prefix + key;
  }

  /** The glob of the keys this adapter owns for `namespace` (or all of them). */
  #pattern(namespace) {
    return globEscape(this.prefix + (namespace ? `${namespace}:` : '')) + '*';
  }

  async get(key) {
    return this.shm.get(this.#key(key));
  }

  async getMany(keys) {
    if (keys.length === 0) return [];
    return this.#readMany(keys.map((key) => this.#key(key)));
  }

  /** One MGET; on a Redis Cluster, where the keys may live in different slots, one GET each. */
  async #readMany(storeKeys) {
    try {
      return await this.shm.mget(storeKeys);
    } catch (error) {
      if (error.code !== 'ERR_SHM_CROSSSLOT') throw error;
      return Promise.all(storeKeys.map((key) => this.shm.get(key)));
    }
  }

  /** `ttl` in ms as Keyv gives it; none (or 0) keeps the key until deleted. */
  async set(key, value, ttl) {
    const ttlMs = typeof ttl === 'number' && Number.isFinite(ttl) && ttl !== 0 ? ttl : undefined;
    if (ttlMs !== undefined && ttlMs < 0) {
      // Already expired: what a write with a past deadline leaves is no key.
      await this.shm.delete(this.#key(key));
      return true;
    }
    await this.shm.set(this.#key(key), value, ttlMs === undefined ? undefined : { ttl: ttlMs });
    return true;
  }

  async setMany(entries) {
    // Calls made in the same tick go out in one write (one round trip).
    return Promise.all(entries.map(({ key, value, ttl }) => this.set(key, value, ttl)));
  }

  async has(key) {
    return this.shm.has(this.#key(key));
  }

  async hasMany(keys) {
    return Promise.all(keys.map((key) => this.has(key)));
  }

  async delete(key) {
    return this.shm.delete(this.#key(key));
  }

  /** True when every key existed (and is now deleted), as Keyv's own fallback answers. */
  async deleteMany(keys) {
    const deleted = await Promise.all(keys.map((key) => this.delete(key)));
    return deleted.length > 0 && deleted.every(Boolean);
  }

  /**
   * Deletes the keys of this adapter's Keyv namespace (and prefix). With
   * neither a namespace nor a prefix, deletes every key of the store.
   */
  async clear() {
    if (!this.namespace && !this.prefix) return this.shm.clear();
    const keys = await this.shm.keys(this.#pattern(this.namespace));
    await Promise.all(keys.map((key) => this.shm.delete(key)));
  }

  /**
   * Yields `[key, value]` for the keys of `namespace` (Keyv passes its own),
   * keys as Keyv wrote them (without the adapter's prefix). Values are read
   * in batches; a key deleted or expired meanwhile is skipped, and so is a
   * value Keyv did not write (Keyv's serializer writes strings; a counter
   * from `shm.incr` under the same prefix is not one).
   */
  async *iterator(namespace) {
    const keys = await this.shm.keys(this.#pattern(namespace));
    for (let i = 0; i < keys.length; i += ITERATOR_BATCH) {
      const batch = keys.slice(i, i + ITERATOR_BATCH);
      const values = await this.#readMany(batch);
      for (let j = 0; j < batch.length; j++) {
        if (typeof values[j] === 'string') yield [batch[j].slice(this.prefix.length), values[j]];
      }
    }
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

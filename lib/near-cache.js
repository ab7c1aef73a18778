'use strict';

/**
 * The near cache of the Redis backend: each process keeps values it read in
 * memory, kept coherent by invalidations the server pushes, the model of
 * Redis's client-side caching. (On cluster-shm's broker, workers read the
 * store mapped into their own memory: there is nothing to cache.)
 *
 * - A miss sends `CLIENT TRACKING ON REDIRECT <id>` and the GET together on
 *   the data connection, so the server tracks the key for this process;
 *   `<id>` is a connection of this process subscribed to
 *   `__redis__:invalidate`, where the server sends the keys that change
 *   (and a null for a flush), as Redis 6 and later do.
 * - A reply is kept only if no invalidation of its key (nor a flush, nor a
 *   write from this process) happened while it was on its way.
 * - Writes from this process drop the key at once, so a process always
 *   reads its own writes; other processes drop it when the invalidation
 *   reaches them.
 * - When the invalidation connection is lost, the whole near cache is
 *   dropped, and is used again only once a new connection is subscribed.
 * - Entries also expire after `ttl` ms, and the least recently used go
 *   past `maxKeys`.
 */

const { CODES } = require('./errors');

const INVALIDATE_CHANNEL = '__redis__:invalidate';

/** Commands that change no key: sent as they are. */
const READ_ONLY = new Set([
  'MGET',
  'EXISTS',
  'PTTL',
  'TTL',
  'TYPE',
  'STRLEN',
  'KEYS',
  'SCAN',
  'DBSIZE',
  'INFO',
  'PING',
  'ECHO',
  'TIME',
  'CONFIG',
  'CLIENT',
  'COMMAND',
  'PUBLISH',
  'PUBSUB',
  'SHM.LOCK',
  'SHM.UNLOCK',
  'SHM.EXTEND',
]);

/** Commands that change the key in their first argument only. */
const ONE_KEY_WRITES = new Set([
  'SET',
  'SETNX',
  'SETEX',
  'PSETEX',
  'GETSET',
  'GETDEL',
  'GETEX',
  'DELEX',
  'APPEND',
  'INCR',
  'INCRBY',
  'DECR',
  'DECRBY',
  'INCRBYFLOAT',
  'SHM.INCRBY',
  'EXPIRE',
  'PEXPIRE',
  'EXPIREAT',
  'PEXPIREAT',
  'PERSIST',
  'SHM.RATELIMIT',
]);

const DEFAULTS = { maxKeys: 10_000, ttl: 60_000 };

class NearCache {
  #backend;
  #maxKeys;
  #ttl;
  /** key -> { raw, expires }, least recently used first. */
  #entries = new Map();
  /** key -> { count, dirty }: GETs on their way, and whether the key changed meanwhile. */
  #pending = new Map();
  /** The subscribed invalidation connection: { id, close() }, once ready. */
  #listener = null;
  /** The connection being opened, if any. */
  #starting = null;
  /** Bumped whenever the invalidation connection is replaced or lost. */
  #epoch = 0;
  #closed = false;
  /** The data connection the cached entries were read on. */
  #generation = -1;
  /** No new invalidation connection is tried before this time, after one failed. */
  #retryAt = 0;
  /** Set when the server cannot track keys: calls go through uncached. */
  #disabled = false;
  /** Counters for stats(). */
  hits = 0;
  misses = 0;

  constructor(backend, options) {
    this.#backend = backend;
    const { maxKeys, ttl } = { ...DEFAULTS, ...(options === true ? {} : options) };
    this.#maxKeys = maxKeys;
    this.#ttl = ttl;
  }

  get size() {
    return this.#entries.size;
  }

  call(args) {
    const name = String(args[0]).toUpperCase();
    if (name === 'GET' && args.length === 2) return this.#get(String(args[1]));
    if (!READ_ONLY.has(name)) this.#written(name, args);
    return this.#backend.call(args);
  }

  callAll(args) {
    if (!READ_ONLY.has(String(args[0]).toUpperCase())) this.#flush();
    return this.#backend.callAll(args);
  }

  /** What a write from this process makes stale here. */
  #written(name, args) {
    if (ONE_KEY_WRITES.has(name)) this.#invalidate([String(args[1])]);
    else if (name === 'DEL' || name === 'UNLINK') this.#invalidate(args.slice(1).map(String));
    else if (name === 'MSET' || name === 'MSETNX') this.#invalidate(args.filter((_, i) => i % 2 === 1).map(String));
    // Anything else (FLUSHDB, RENAME, raw commands) may change any key.
    else this.#flush();
  }

  async #get(key) {
    // Tracking belongs to the data connection: when it is replaced (or just
    // lost), the server tracks nothing of what is cached here any more.
    if (this.#generation !== this.#backend.generation) {
      this.#generation = this.#backend.generation;
      this.#flush();
    }
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      if (entry.expires > Date.now() && this.#listener !== null) {
        // Most recently used goes last.
        this.#entries.delete(key);
        this.#entries.set(key, entry);
        this.hits++;
        return entry.raw;
      }
      this.#entries.delete(key);
    }
    this.misses++;
    const listener = this.#disabled ? null : this.#listener || (await this.#start());
    if (listener === null) return this.#backend.call(['GET', key]);
    const epoch = this.#epoch;
    const pending = this.#pending.get(key) || { count: 0, dirty: false };
    pending.count++;
    this.#pending.set(key, pending);
    try {
      // In this order on the data connection: tracking on, the GET, and the
      // key's time to live, which bounds the entry's. A reply is kept only
      // if the GET came over the connection tracking was on for.
      const sent = Date.now();
      const tracking = this.#track(listener);
      const reading = this.#send(['GET', key]);
      const living = this.#backend.call(['PTTL', key]).catch(() => 0);
      const { reply: raw, generation: readOn } = await reading;
      const [trackedOn, left] = await Promise.all([tracking, living]);
      const current = !pending.dirty && epoch === this.#epoch && this.#listener === listener;
      if (trackedOn !== false && trackedOn === readOn && current && left !== 0) {
        // Entries read on an earlier connection are not tracked any more.
        if (this.#generation !== readOn) {
          this.#flush();
          this.#generation = readOn;
        }
        this.#store(key, raw, left > 0 ? sent + left : Infinity);
      }
      return raw;
    } finally {
      if (--pending.count === 0 && this.#pending.get(key) === pending) this.#pending.delete(key);
    }
  }

  /**
   * A command on the data connection: `{ reply, generation }`, with the
   * generation of the connection its reply came over.
   */
  #send(args) {
    return this.#backend.call(args).then((reply) => ({ reply, generation: this.#backend.generation }));
  }

  /**
   * Turns tracking on, redirected to `listener`, with NOLOOP (this
   * process's own writes drop its entries before they are sent), with every
   * miss: the reply does not tell which connection it went over. Resolves
   * with the generation of the connection it is on for, or false.
   */
  #track(listener) {
    return this.#send(['CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(listener.id), 'NOLOOP']).then(
      ({ generation }) => generation,
      (error) => this.#refused(error),
    );
  }

  /**
   * A server that cannot track keys (Redis before 6, or one that refuses
   * CLIENT) turns the near cache off for good, with a warning; a failure of
   * the connection only skips caching this reply.
   */
  #refused(error) {
    if (error && error.code === CODES.SERVER) this.#turnOff(`the server refused CLIENT TRACKING (${error.message})`);
    return false;
  }

  #turnOff(reason) {
    if (this.#disabled) return;
    this.#disabled = true;
    this.close();
    process.emitWarning(`the near cache is off: ${reason}`, { code: CODES.UNSUPPORTED });
  }

  /** Keeps a value until `ttl` from now, or until the key itself expires (`until`), whichever is first. */
  #store(key, raw, until) {
    this.#entries.delete(key);
    this.#entries.set(key, { raw, expires: Math.min(Date.now() + this.#ttl, until) });
    if (this.#entries.size > this.#maxKeys) this.#entries.delete(this.#entries.keys().next().value);
  }

  /** Opens and subscribes the invalidation connection; null when that fails (calls then go uncached). */
  #start() {
    if (this.#starting === null && Date.now() < this.#retryAt) return Promise.resolve(null);
    if (this.#starting === null) {
      this.#starting = this.#backend
        .openInvalidations((keys) => (keys === null ? this.#flush() : this.#invalidate(keys.map(String))), () => this.#lost())
        .then(
          (listener) => {
            this.#starting = null;
            if (this.#closed) {
              listener.close();
              return null;
            }
            this.#epoch++;
            this.#listener = listener;
            return listener;
          },
          (error) => {
            this.#starting = null;
            // A server that refuses (no CLIENT, no SUBSCRIBE permission, a
            // cluster) will go on refusing; an unreachable one is tried
            // again a second later, uncached meanwhile.
            if (error && (error.code === CODES.UNSUPPORTED || error.code === CODES.SERVER || error.code === CODES.AUTH || error.code === CODES.UNSAFE_SOCKET)) this.#turnOff(error.message);
            else this.#retryAt = Date.now() + 1_000;
            return null;
          },
        );
    }
    return this.#starting;
  }

  #invalidate(keys) {
    for (const key of keys) {
      this.#entries.delete(key);
      const pending = this.#pending.get(key);
      if (pending) pending.dirty = true;
    }
  }

  #flush() {
    this.#entries.clear();
    for (const pending of this.#pending.values()) pending.dirty = true;
  }

  /** The invalidation connection is gone: nothing cached can be trusted. */
  #lost() {
    this.#listener = null;
    this.#epoch++;
    this.#flush();
  }

  close() {
    this.#closed = true;
    if (this.#listener) this.#listener.close();
    this.#listener = null;
    this.#flush();
  }
}

module.exports = { NearCache, INVALIDATE_CHANNEL };

'use strict';

const { randomBytes } = require('node:crypto');
const { encode, decode, encodedLength } = require('./codec');
const { CODES, shmError, typeError, rangeError, fromNative } = require('./errors');
const { DEFAULTS, BROKER_OPTIONS, validateOptions, callOptions, checkTtl, checkTimeout } = require('./options');
const { Lock, lockTimeout } = require('./lock');
const { PubSubHub } = require('./pubsub');
const { Connection } = require('./connection');
const { InOrder } = require('./in-order');
const { NearCache, openSocketInvalidations } = require('./near-cache');

/**
 * Commands that change the state of the connection they are sent on (or
 * block it): command() refuses them, since that connection is shared by
 * every call of the process.
 */
const CONNECTION_STATE_COMMANDS = new Set(['MULTI', 'EXEC', 'DISCARD', 'WATCH', 'UNWATCH', 'SUBSCRIBE', 'UNSUBSCRIBE', 'PSUBSCRIBE', 'PUNSUBSCRIBE', 'QUIT', 'RESET', 'HELLO', 'AUTH', 'SELECT']);
/** CLIENT subcommands that change the connection (the near cache's tracking, or its replies). */
const CONNECTION_STATE_CLIENT = new Set(['TRACKING', 'REPLY', 'CACHING']);

/** How long a single-flight leader's lock lives without renewal. */
const FLIGHT_LEASE = 15_000;
/** How long a failed fetch's error is kept for the callers that waited on it. */
const FLIGHT_ERROR_TTL = 60_000;
/** How long the failure count of a key outlives its last failure. */
const FLIGHT_COUNTER_TTL = 3_600_000;

/** Runs commands against the store in this process (the primary). */
class InProcessBackend {
  constructor(broker) {
    this.broker = broker;
  }

  get hostsBroker() {
    return true;
  }

  call(args) {
    try {
      return this.broker.call(args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  createSubscriber(onEvent) {
    return this.broker.subscriber(onEvent);
  }

  /** Loads the snapshot at `path` and saves there when the broker closes. */
  persist(path) {
    try {
      return this.broker.persist(path);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** A blocking command comes back as a Promise from the broker's threads. */
  async callBlocking(args) {
    try {
      return await this.broker.call(args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  close() {
    this.broker.close();
  }
}

/**
 * Sends commands over the broker's socket (workers, other processes): the
 * ordinary calls on one pipelined connection driven from the JS thread
 * (lib/connection.js), blocking calls (lock waits) on native connections of
 * their own, so that they never hold up the shared one.
 */
class RemoteBackend {
  constructor(connectionOptions, createNativeClient, createSubscriber) {
    this.connectionOptions = connectionOptions;
    this.createNativeClient = createNativeClient;
    this.createSubscriber = createSubscriber;
    this.connection = null;
    this.nativeClient = null;
  }

  get hostsBroker() {
    return false;
  }

  call(args) {
    if (this.connection === null) this.connection = new Connection(this.connectionOptions());
    return this.connection.call(args);
  }

  /** A lock acquired by a wait was released: the connection that waited may wait again. */
  lockReleased(token) {
    if (this.nativeClient) this.nativeClient.released(token);
  }

  /** Changes whenever calls start going over a new socket. */
  get generation() {
    return this.connection === null ? 0 : this.connection.generation;
  }

  /** Resolves with `{ reply, generation }`: the generation of the socket the command was written on. */
  callTagged(args) {
    if (this.connection === null) this.connection = new Connection(this.connectionOptions());
    return this.connection.call(args, true);
  }

  /** The near cache's invalidation connection (lib/near-cache.js). */
  openInvalidations(onInvalidate, onLost) {
    return openSocketInvalidations(this.connectionOptions(), onInvalidate, onLost);
  }

  callBlocking(args, waitMs) {
    if (this.nativeClient === null) this.nativeClient = this.createNativeClient();
    return this.nativeClient.callBlocking(args, waitMs).catch(rethrowNative);
  }

  /**
   * New timeouts apply from the next call on. The native client is kept:
   * dropping it would close connections that may hold locks.
   */
  reset() {
    if (this.connection) this.connection.options = this.connectionOptions();
  }

  close() {
    const closed = () => {
      throw shmError(CODES.CLOSED, 'the cluster-shm connection is closed');
    };
    if (this.connection) this.connection.close();
    else this.connection = new Connection(this.connectionOptions());
    this.connection.close();
    if (this.nativeClient) this.nativeClient.close();
    this.createNativeClient = closed;
  }
}

function rethrowNative(error) {
  throw fromNative(error);
}

/** A backend that can only fail, with the reason it was given. */
class FailedBackend {
  constructor(error) {
    this.error = error;
  }

  get hostsBroker() {
    return false;
  }

  call() {
    throw this.error;
  }

  callBlocking() {
    throw this.error;
  }

  createSubscriber() {
    throw this.error;
  }

  close() {}
}

function checkKey(key, fn, maxBytes) {
  if (typeof key !== 'string') {
    throw typeError(`${fn}: key must be a string, got ${key === null ? 'null' : typeof key}`);
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long keys need counting.
  if (key.length * 3 > maxBytes && Buffer.byteLength(key) > maxBytes) {
    throw rangeError(`${fn}: the key is ${Buffer.byteLength(key)} bytes, over maxKeyBytes (${maxBytes})`, CODES.KEY_TOO_LARGE);
  }
}

/** The fields of an INFO reply. */
function parseInfo(reply) {
  const fields = {};
  for (const line of toText(reply).split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields[line.slice(0, at)] = line.slice(at + 1);
  }
  return fields;
}

function toText(reply) {
  return Buffer.isBuffer(reply) ? reply.toString('utf8') : String(reply);
}

/**
 * The API every process sees. The backend decides where commands run; all
 * value encoding and argument checking happens here, once.
 */
class SharedMemory {
  #backend;
  /** Where calls go: the backend, or the near cache in front of it. */
  #data;
  #nearCache = null;
  #options;
  #role;
  #socket;
  #onConfigure;
  /** update() calls of one key in this process run one after another. */
  #updates = new InOrder();
  /** getOrSet() calls in flight in this process, per key. */
  #flights = new Map();
  #hub;
  /** The snapshot file in use, once loaded. */
  #persisted = null;
  /** Locks this process holds (as far as it knows): reads skip the near cache meanwhile. */
  #locksHeld = 0;
  /** Whether the warning that key events could not be turned on was given. */
  #keyEventsWarned = false;

  constructor({ backend, role, socket, options = {}, onConfigure = () => {} }) {
    this.#backend = backend;
    this.#role = role;
    this.#socket = socket;
    this.#options = withPolicyDefault({ ...DEFAULTS, ...options }, options);
    this.#onConfigure = onConfigure;
    this.#data = backend;
    this.#applyNearCache();
    this.#hub = new PubSubHub((onEvent) => this.#backend.createSubscriber(onEvent), backend.db);
    if (backend.hostsBroker) this.#applyBrokerOptions();
  }

  /** 'primary' (hosts the broker), 'worker' (cluster worker) or 'client'. */
  get role() {
    return this.#role;
  }

  /** Path of the broker's socket, or undefined where there is none. */
  get socket() {
    return this.#socket;
  }

  /** The error codes, as on `err.code`. */
  get codes() {
    return CODES;
  }

  /** The options in force in this process. */
  get options() {
    return { ...this.#options };
  }

  configure(options) {
    validateOptions(options);
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    const brokerOptions = BROKER_OPTIONS.filter((name) => name in defined);
    if (brokerOptions.length && !this.#backend.hostsBroker) {
      const where = this.#backend.leases
        ? 'on the Redis server itself (maxmemory, maxmemory-policy, its own persistence)'
        : 'in the process that hosts the broker (the primary), before forking';
      throw typeError(`${brokerOptions.join(', ')}: broker options are set ${where}`, CODES.INVALID_ARG_VALUE);
    }
    this.#options = withPolicyDefault({ ...this.#options, ...defined }, defined, this.#options);
    if (brokerOptions.length) this.#applyBrokerOptions();
    if ('nearCache' in defined) this.#applyNearCache();
    if (this.#backend.reset) this.#backend.reset();
    this.#onConfigure(this.options);
    return this;
  }

  /**
   * A near cache in front of a remote store, when the option asks for one.
   * The primary's calls are in-process already: it has none.
   */
  #applyNearCache() {
    if (this.#nearCache) this.#nearCache.close();
    this.#nearCache = null;
    this.#data = this.#backend;
    const { nearCache } = this.#options;
    if (!nearCache || !this.#backend.openInvalidations) return;
    this.#nearCache = new NearCache(this.#backend, nearCache);
    this.#data = this.#nearCache;
  }

  #applyBrokerOptions() {
    const { maxMemory, maxKeys, evictionPolicy, persist } = this.#options;
    this.#data.call(['CONFIG', 'SET', 'maxmemory', String(maxMemory), 'maxkeys', String(maxKeys), 'maxmemory-policy', evictionPolicy]);
    if (persist && persist !== this.#persisted) {
      this.#backend.persist(require('node:path').resolve(persist));
      this.#persisted = persist;
    }
  }

  #key(key, fn) {
    checkKey(key, fn, this.#options.maxKeyBytes);
  }

  #encode(value, fn) {
    const encoded = encode(value, this.#options.serialization);
    // As for keys: a string of n UTF-16 units is at most 3n UTF-8 bytes.
    if (encoded.length * 3 <= this.#options.maxValueBytes) return encoded;
    const length = encodedLength(encoded);
    if (length > this.#options.maxValueBytes) {
      throw rangeError(
        `${fn}: the encoded value is ${length} bytes, over maxValueBytes (${this.#options.maxValueBytes})`,
        CODES.VALUE_TOO_LARGE,
      );
    }
    return encoded;
  }

  async get(key) {
    this.#key(key, 'get');
    return decode(await (this.#locksHeld > 0 ? this.#backend : this.#data).call(['GET', key]));
  }

  async set(key, value, options) {
    await this.#data.call(this.#setCommand('set', key, value, options));
  }

  async has(key) {
    this.#key(key, 'has');
    return (await this.#data.call(['EXISTS', key])) === 1;
  }

  async delete(key) {
    this.#key(key, 'delete');
    return (await this.#data.call(['DEL', key])) === 1;
  }

  async keys(pattern = '*') {
    if (typeof pattern !== 'string') throw typeError('keys: pattern must be a string');
    return (await this.#everywhere(['KEYS', pattern])).flat().map(toText);
  }

  async size() {
    return (await this.#everywhere(['DBSIZE'])).reduce((sum, n) => sum + n, 0);
  }

  async clear() {
    await this.#everywhere(['FLUSHDB']);
  }

  /** Runs a command on every server holding keys (the masters of a Redis Cluster): a list of replies. */
  async #everywhere(args) {
    return this.#backend.callAll ? this.#data.callAll(args) : [await this.#data.call(args)];
  }

  async mget(keys) {
    if (!Array.isArray(keys)) throw typeError('mget: keys must be an array of strings');
    for (const key of keys) this.#key(key, 'mget');
    if (keys.length === 0) return [];
    return (await this.#data.call(['MGET', ...keys])).map(decode);
  }

  async mset(entries) {
    const pairs = toPairs(entries);
    if (pairs.length === 0) return;
    const args = ['MSET'];
    for (const [key, value] of pairs) {
      this.#key(key, 'mset');
      args.push(key, this.#encode(value, 'mset'));
    }
    await this.#data.call(args);
  }

  /**
   * Adds `by` to the number at `key` atomically (a missing key counts as 0)
   * and resolves with the result. An integer `by` works on integers
   * (INCRBY, with Redis's overflow and not-an-integer errors); a fractional
   * one on any number (INCRBYFLOAT). The key keeps its ttl.
   */
  async incr(key, by = 1) {
    this.#key(key, 'incr');
    return this.#increment(key, by, 'incr');
  }

  /** `incr(key, -by)`. */
  async decr(key, by = 1) {
    this.#key(key, 'decr');
    if (typeof by !== 'number') throw typeError(`decr: by must be a number, got ${typeof by}`);
    return this.#increment(key, -by, 'decr');
  }

  async #increment(key, by, fn) {
    if (typeof by !== 'number') throw typeError(`${fn}: by must be a number, got ${typeof by}`);
    if (!Number.isFinite(by)) throw rangeError(`${fn}: by must be finite, got ${by}`);
    if (Number.isInteger(by)) {
      if (!Number.isSafeInteger(by)) throw rangeError(`${fn}: by must be a safe integer, got ${by}`);
      return this.#data.call(['INCRBY', key, String(by)]);
    }
    return Number(toText(await this.#data.call(['INCRBYFLOAT', key, String(by)])));
  }

  /**
   * A checked SET command for `fn`: key, encoded value, the given SET
   * options, and PX for a `{ ttl }` option (or `withoutTtl` when none).
   */
  #setCommand(fn, key, value, options, setOptions = [], withoutTtl = []) {
    this.#key(key, fn);
    const { ttl } = callOptions(options, ['ttl'], fn);
    const ms = checkTtl(ttl, fn);
    return ['SET', key, this.#encode(value, fn), ...setOptions, ...(ms === undefined ? withoutTtl : ['PX', String(ms)])];
  }

  /** Stores the value only if the key does not exist; true when stored. */
  async setIfAbsent(key, value, options) {
    return (await this.#data.call(this.#setCommand('setIfAbsent', key, value, options, ['NX']))) === 'OK';
  }

  /** Stores the value and resolves with the one it replaced (or undefined). */
  async getAndSet(key, value, options) {
    return decode(await this.#data.call(this.#setCommand('getAndSet', key, value, options, ['GET'])));
  }

  /** Deletes the key and resolves with the value it held (or undefined). */
  async getAndDelete(key) {
    this.#key(key, 'getAndDelete');
    return decode(await this.#data.call(['GETDEL', key]));
  }

  /**
   * Replaces the value with `next` only if it currently equals `expected`
   * (`undefined`: only if the key does not exist). Values are compared by
   * their stored encoding, so objects compare by JSON text, key order
   * included. Resolves true when replaced. The key keeps its ttl unless
   * `ttl` is given.
   */
  async compareAndSet(key, expected, next, options) {
    this.#key(key, 'compareAndSet');
    const condition = expected === undefined ? ['NX'] : ['IFEQ', this.#encode(expected, 'compareAndSet')];
    const command = this.#setCommand('compareAndSet', key, next, options, condition, ['KEEPTTL']);
    return (await this.#data.call(command)) === 'OK';
  }

  /**
   * Atomic read-modify-write: `fn(current)` (sync or async) gets the value
   * (undefined when missing) and returns the new one (undefined deletes the
   * key). The write only happens if nobody changed the value meanwhile;
   * otherwise `fn` runs again on the fresh value, up to `retries` times
   * (default 1000), then ERR_SHM_CONFLICT. Resolves with the value written.
   * Updates of one key from the same process queue up locally, so they do
   * not compete with each other.
   */
  async update(key, fn, options) {
    this.#key(key, 'update');
    if (typeof fn !== 'function') throw typeError('update: fn must be a function');
    const { retries = 1000, ttl } = callOptions(options, ['retries', 'ttl'], 'update');
    if (!Number.isSafeInteger(retries) || retries < 0) throw rangeError(`update: retries must be a non-negative integer, got ${retries}`);
    const ms = checkTtl(ttl, 'update');
    return this.#updates.run(key, () => this.#updateLoop(key, fn, retries, ms));
  }

  async #updateLoop(key, fn, retries, ttl) {
    for (let attempt = 0; ; attempt++) {
      // Read through the near cache: the compare-and-set needs the stored bytes.
      const stored = await this.#backend.call(['GET', key]);
      const next = await fn(decode(stored));
      let written;
      if (next === undefined) {
        written = stored === null || (await this.#data.call(['DELEX', key, 'IFEQ', stored])) === 1;
      } else {
        const args = ['SET', key, this.#encode(next, 'update')];
        args.push(...(stored === null ? ['NX'] : ['IFEQ', stored]));
        args.push(...(ttl === undefined ? ['KEEPTTL'] : ['PX', String(ttl)]));
        written = (await this.#data.call(args)) === 'OK';
      }
      if (written) return next;
      if (attempt >= retries) {
        throw shmError(CODES.CONFLICT, `update: "${key}" kept changing; gave up after ${retries + 1} attempts`);
      }
    }
  }


  /**
   * The value of `key`; when it is missing, exactly one caller across all
   * processes runs `fetcher()` and stores its result (with `ttl`), and every
   * other caller waiting meanwhile gets that result, or its error. If the
   * fetching process dies, the next waiter fetches instead.
   */
  async getOrSet(key, fetcher, options) {
    this.#key(key, 'getOrSet');
    if (typeof fetcher !== 'function') throw typeError('getOrSet: fetcher must be a function');
    const { ttl, timeout = 30_000 } = callOptions(options, ['ttl', 'timeout'], 'getOrSet');
    const ms = checkTtl(ttl, 'getOrSet');
    const wait = checkTimeout(timeout, 'getOrSet');
    const joined = this.#flights.get(key);
    if (joined) return joined;
    const flight = this.#fetchOnce(key, fetcher, ms, wait).finally(() => this.#flights.delete(key));
    this.#flights.set(key, flight);
    return flight;
  }

  async #fetchOnce(key, fetcher, ttl, timeout) {
    // Failures of the fetch for `key` are counted; a caller shares a
    // failure's error only if it looked before that failure was counted,
    // i.e. it was waiting on that very fetch.
    const failuresKey = `__shm:flight:${key}:failures`;
    const errorKey = `__shm:flight:${key}:error`;
    // Two reads, not one MGET, so that a Redis Cluster may keep the keys
    // on different nodes; the failure count is read first.
    const [failures, stored] = await Promise.all([this.#backend.call(['GET', failuresKey]), this.#backend.call(['GET', key])]);
    if (stored !== null) return decode(stored);
    const seen = failures === null ? 0 : Number(failures);
    const lock = await this.lock(`__shm:flight:${key}`, { ttl: FLIGHT_LEASE, timeout });
    let renew;
    try {
      const [now, failure] = await Promise.all([this.#backend.call(['GET', key]), this.#backend.call(['GET', errorKey])]);
      if (now !== null) return decode(now);
      if (failure !== null) {
        const { failed, error } = JSON.parse(failure.toString());
        if (failed > seen) throw Object.assign(new Error(error.message), { name: error.name, code: error.code || CODES.FETCH_FAILED });
      }
      renew = setInterval(() => lock.extend(FLIGHT_LEASE).catch(() => {}), FLIGHT_LEASE / 3);
      renew.unref();
      let value;
      try {
        value = await fetcher();
        if (value === undefined) throw typeError('getOrSet: fetcher resolved with undefined, which cannot be stored', CODES.INVALID_ARG_VALUE);
      } catch (error) {
        const failed = await this.#data.call(['INCR', failuresKey]);
        await this.#data.call(['PEXPIRE', failuresKey, String(FLIGHT_COUNTER_TTL)]);
        const record = { failed, error: { message: String(error && error.message), name: error && error.name, code: error && error.code } };
        await this.#data.call(['SET', errorKey, JSON.stringify(record), 'PX', String(FLIGHT_ERROR_TTL)]);
        throw error;
      }
      await this.set(key, value, ttl === undefined ? undefined : { ttl });
      return value;
    } finally {
      clearInterval(renew);
      await lock.release().catch(() => {});
    }
  }

  /**
   * Acquires the named lock, waiting in line (first come, first served) up
   * to `timeout` ms (default 10000; 0 only tries), then ERR_SHM_LOCK_TIMEOUT.
   * The lock lasts `ttl` ms (default 30000) unless extended or released, and
   * is released at once if this process exits or disconnects. On Redis the
   * lock is a lease of `lockLease` ms renewed while this process lives, so
   * a holder that dies keeps it until that lease ends.
   */
  async lock(name, options) {
    this.#key(name, 'lock');
    const { ttl = 30_000, timeout = 10_000 } = callOptions(options, ['ttl', 'timeout'], 'lock');
    const ttlMs = checkTtl(ttl, 'lock');
    const leases = this.#backend.leases;
    const ms = String(leases ? Math.min(ttlMs, this.#options.lockLease) : ttlMs);
    const wait = checkTimeout(timeout, 'lock');
    const token = randomBytes(16).toString('hex');
    let fence = await this.#data.call(['SHM.LOCK', name, token, ms]);
    if (fence === null && wait > 0) {
      fence = await this.#backend.callBlocking(['SHM.LOCK', name, token, ms, 'WAIT', String(wait)], wait);
    }
    if (fence === null) throw lockTimeout(name, wait);
    // While this process holds a lock, its reads skip the near cache: what
    // the lock protects may have been written just before it was granted,
    // by a process whose invalidation is still on its way.
    this.#locksHeld++;
    const onRelease = () => {
      this.#locksHeld--;
      if (this.#backend.lockReleased) this.#backend.lockReleased(token);
    };
    return new Lock((args) => this.#data.call(args), name, token, fence, leases ? { ttl: ttlMs, lease: this.#options.lockLease, onRelease } : { onRelease });
  }

  /** Runs `fn(lock)` holding the named lock, and always releases it. */
  async withLock(name, fn, options) {
    if (typeof fn !== 'function') throw typeError('withLock: fn must be a function');
    const lock = await this.lock(name, options);
    try {
      return await fn(lock);
    } finally {
      await lock.release().catch(() => {});
    }
  }

  /**
   * Takes one point from `key`'s budget of `points` per `duration` ms,
   * atomically across all processes. A fixed window resets every
   * `duration`; with `sliding: true` the previous window still counts in
   * proportion to its overlap, so bursts at a window's edge cannot pass
   * twice the budget. Resolves with `{ allowed, remaining, resetMs }`
   * (`resetMs`: when a refused caller may try again, or when the window
   * ends).
   */
  async rateLimit(key, options) {
    this.#key(key, 'rateLimit');
    const { points, duration, sliding = false } = callOptions(options, ['points', 'duration', 'sliding'], 'rateLimit');
    if (!Number.isSafeInteger(points) || points < 1) throw rangeError(`rateLimit: points must be a positive integer, got ${points}`);
    const window = checkTtl(duration, 'rateLimit');
    if (window === undefined) throw typeError('rateLimit: duration (ms) is required');
    const args = ['SHM.RATELIMIT', key, String(points), String(window)];
    if (sliding) args.push('SLIDING');
    const [allowed, remaining, resetMs] = await this.#data.call(args);
    return { allowed: allowed === 1, remaining, resetMs };
  }

  /** Sets a key's time to live; false when the key does not exist. */
  async expire(key, ttl) {
    this.#key(key, 'expire');
    if (ttl === undefined) throw typeError('expire: ttl is required');
    return (await this.#data.call(['PEXPIRE', key, String(checkTtl(ttl, 'expire'))])) === 1;
  }

  /** Milliseconds left: undefined for a missing key, Infinity for no expiry. */
  async ttl(key) {
    this.#key(key, 'ttl');
    const left = await this.#data.call(['PTTL', key]);
    if (left === -2) return undefined;
    return left === -1 ? Infinity : left;
  }

  /** Removes a key's expiry; false when it had none or does not exist. */
  async persist(key) {
    this.#key(key, 'persist');
    return (await this.#data.call(['PERSIST', key])) === 1;
  }

  /** Store and broker statistics, from INFO. */
  async stats() {
    // A Redis Cluster answers per master: counts and sizes are summed.
    const servers = (await this.#everywhere(['INFO'])).map(parseInfo);
    const fields = servers[0];
    const db = this.#backend.db || 0;
    const sum = (read) => servers.reduce((total, server) => total + read(server), 0);
    const keyspace = (server, at) => Number((/keys=(\d+),expires=(\d+)/.exec(server[`db${db}`] || '') || [0, 0, 0])[at]);
    const number = (name) => sum((server) => Number(server[name] || 0));
    const brokerOnly = (name) => (fields.cluster_shm_version === undefined ? null : number(name));
    return {
      keys: sum((server) => keyspace(server, 1)),
      keysWithTtl: sum((server) => keyspace(server, 2)),
      usedMemory: number('used_memory'),
      peakMemory: number('used_memory_peak'),
      residentMemory: number('used_memory_rss'),
      // INFO's mem_fragmentation_ratio; over a Redis Cluster's masters, their RSS over their used memory.
      fragmentationRatio:
        servers.length === 1 ? Number(fields.mem_fragmentation_ratio || 0) : Math.round((number('used_memory_rss') / number('used_memory')) * 100) / 100,
      expiredKeys: number('expired_keys'),
      evictedKeys: number('evicted_keys'),
      keyspaceHits: number('keyspace_hits'),
      keyspaceMisses: number('keyspace_misses'),
      connectedClients: number('connected_clients'),
      maxMemory: number('maxmemory'),
      // What only the broker counts is null on Redis.
      maxKeys: brokerOnly('maxkeys'),
      evictionPolicy: fields.maxmemory_policy,
      locksHeld: brokerOnly('locks_held'),
      outputBufferBytes: brokerOnly('client_output_buffer_bytes'),
      lockWaiters: brokerOnly('blocked_clients'),
      totalCommands: number('total_commands_processed'),
      uptimeSeconds: number('uptime_in_seconds'),
      version: fields.cluster_shm_version || `${fields.server_name || 'redis'} ${fields.valkey_version || fields.redis_version}`,
      // This process's near cache, when it has one.
      nearCache: this.#nearCache && { keys: this.#nearCache.size, hits: this.#nearCache.hits, misses: this.#nearCache.misses },
    };
  }

  /**
   * Sends a raw command (`shm.command('INFO', 'memory')`) and resolves with
   * the raw reply: Buffers for bulk strings, numbers, strings, arrays, null.
   */
  async command(name, ...args) {
    if (typeof name !== 'string') throw typeError('command: the command name must be a string');
    const upper = name.toUpperCase();
    const subcommand = typeof args[0] === 'string' ? args[0].toUpperCase() : '';
    if (
      CONNECTION_STATE_COMMANDS.has(upper) ||
      (upper === 'CLIENT' && CONNECTION_STATE_CLIENT.has(subcommand)) ||
      (upper === 'SHM.LOCK' && args.some((a) => typeof a === 'string' && a.toUpperCase() === 'WAIT'))
    ) {
      throw typeError(
        `command: ${upper}${upper === 'CLIENT' ? ` ${subcommand}` : ''} would change the connection every call of this process shares; use subscribe(), update(), lock() or the nearCache option instead`,
        CODES.INVALID_ARG_VALUE,
      );
    }
    const argv = [name];
    for (const arg of args) {
      if (typeof arg === 'string' || Buffer.isBuffer(arg)) argv.push(arg);
      else if (typeof arg === 'number' && Number.isFinite(arg)) argv.push(String(arg));
      else throw typeError('command: arguments must be strings, finite numbers or Buffers');
    }
    return this.#data.call(argv);
  }

  /**
   * Publishes a message (any value `set` accepts, with its type kept) to
   * every subscriber of the channel in every process; resolves with how
   * many subscriptions received it.
   */
  async publish(channel, message) {
    this.#key(channel, 'publish');
    return this.#data.call(['PUBLISH', channel, this.#encode(message, 'publish')]);
  }

  /**
   * Calls `listener(message, channel)` for every message published to
   * `channel`, or to any channel matching it when it is a glob pattern
   * (contains `*`, `?` or `[`; pass `{ pattern: false }` for a literal
   * name). Resolves, once the broker delivers to it, with an async function
   * that unsubscribes. `onMissed({ reason })` is called when messages may
   * have been lost (the connection was reopened after the broker cut off
   * this subscriber for falling behind, or the listener's queue
   * overflowed); subscriptions are restored by themselves.
   */
  async subscribe(channel, listener, options) {
    this.#key(channel, 'subscribe');
    if (typeof listener !== 'function') throw typeError('subscribe: listener must be a function');
    const { pattern, onMissed } = callOptions(options, ['pattern', 'onMissed'], 'subscribe');
    if (onMissed !== undefined && typeof onMissed !== 'function') throw typeError('subscribe: onMissed must be a function');
    const isPattern = pattern === undefined ? /[*?[]/.test(channel) : Boolean(pattern);
    return this.#hub.add(isPattern ? 'pattern' : 'channel', channel, { listener, onMissed });
  }

  /**
   * Calls `listener({ key, event })` when a key matching `keyOrPattern` (a
   * key or a glob pattern) changes in any process: events such as 'set',
   * 'del', 'expire', 'expired', 'evicted', 'incrby', 'persist'. Turns on the
   * broker's keyspace notifications (they cost nothing while nobody
   * listens). Resolves with an async unsubscribe function.
   */
  async watch(keyOrPattern, listener, options) {
    this.#key(keyOrPattern, 'watch');
    if (typeof listener !== 'function') throw typeError('watch: listener must be a function');
    const { onMissed, pattern } = callOptions(options, ['onMissed', 'pattern'], 'watch');
    if (onMissed !== undefined && typeof onMissed !== 'function') throw typeError('watch: onMissed must be a function');
    const isPattern = pattern === undefined ? /[*?[]/.test(keyOrPattern) : Boolean(pattern);
    if (this.#backend.isCluster) {
      // Redis Cluster publishes key events only on the node that holds the
      // key, and a subscription connection listens to one node.
      throw shmError(CODES.UNSUPPORTED, 'watch: key events are not supported on a Redis Cluster (each node publishes only its own keys)');
    }
    await this.#enableKeyspaceEvents();
    return this.#hub.add(isPattern ? 'pattern' : 'channel', this.#hub.keyspaceChannel(keyOrPattern), { listener, onMissed, keyEvents: true });
  }

  /**
   * Turns on the key events watch() needs. A server that refuses CONFIG
   * (managed Redis services often do) gets a warning saying what to set:
   * events still arrive if its operator enabled them.
   */
  async #enableKeyspaceEvents() {
    let flags;
    try {
      const [, current] = await this.#data.call(['CONFIG', 'GET', 'notify-keyspace-events']);
      flags = toText(current);
      const needed = ['K', 'g', '$', 'x', 'e'].filter((f) => !flags.includes(f) && !(flags.includes('A') && f !== 'K'));
      if (needed.length) await this.#data.call(['CONFIG', 'SET', 'notify-keyspace-events', flags + needed.join('')]);
    } catch (error) {
      if (error.code !== CODES.SERVER) throw error;
      if (this.#keyEventsWarned) return;
      this.#keyEventsWarned = true;
      process.emitWarning(
        `watch: the server refused to turn on key events (${error.message}); ` +
          'watch() listeners get events only if the server is configured with notify-keyspace-events "Kg$xe" (or "KA")',
        { code: CODES.KEY_EVENTS_OFF },
      );
    }
  }

  /** Closes this process's connections, or in the primary, the broker. */
  async close() {
    if (this.#nearCache) this.#nearCache.close();
    this.#hub.close();
    this.#backend.close();
  }
}

/**
 * A bound set without a policy evicts least recently used keys, whether it
 * comes from configure() or from CLUSTER_SHM_OPTIONS.
 */
function withPolicyDefault(merged, given, before = DEFAULTS) {
  const bounded = given.maxMemory || given.maxKeys;
  if (bounded && !given.evictionPolicy && before.evictionPolicy === 'noeviction') merged.evictionPolicy = 'allkeys-lru';
  return merged;
}

function toPairs(entries) {
  if (Array.isArray(entries)) {
    for (const pair of entries) {
      if (!Array.isArray(pair) || pair.length !== 2) throw typeError('mset: an array of entries must hold [key, value] pairs');
    }
    return entries;
  }
  if (entries instanceof Map) return [...entries];
  if (entries !== null && typeof entries === 'object') return Object.entries(entries);
  throw typeError('mset: entries must be an object, a Map or an array of [key, value] pairs');
}

module.exports = { SharedMemory, InProcessBackend, RemoteBackend, FailedBackend };

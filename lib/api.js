'use strict';

const { randomBytes } = require('node:crypto');
const { EventEmitter } = require('node:events');
const { types } = require('node:util');
const { encode, encodeInParts, decode, decodeRead, encodedLength } = require('./codec');
const { CODES, shmError, typeError, rangeError, abortError } = require('./errors');
const { DEFAULTS, BROKER_OPTIONS, validateOptions, callOptions, checkTtl, checkTimeout, positiveMilliseconds } = require('./options');
const { Lock, lockTimeout } = require('./lock');
const { PubSubHub } = require('./pubsub');
const { InOrder } = require('./in-order');
const { globEscape } = require('./glob');
const { NearCache } = require('./near-cache');
const { NOT_LOCAL } = require('./backends');

/**
 * Commands that change the state of the connection they are sent on (or
 * block it): command() refuses them, since that connection is shared by
 * every call of the process.
 */
const CONNECTION_STATE_COMMANDS = new Set(['MULTI', 'EXEC', 'DISCARD', 'WATCH', 'UNWATCH', 'SUBSCRIBE', 'UNSUBSCRIBE', 'PSUBSCRIBE', 'PUNSUBSCRIBE', 'QUIT', 'RESET', 'HELLO', 'AUTH', 'SELECT', 'SHM.PUSHES']);
/** CLIENT subcommands that change the connection (the near cache's tracking, or its replies). */
const CONNECTION_STATE_CLIENT = new Set(['TRACKING', 'REPLY', 'CACHING']);

/** SHM.INCRBY's refusal of a result past ±(2^53 - 1) (src/cmd/strings.rs). */
const SAFE_RANGE_ERROR = /^ERR increment or decrement would pass 2\^53 - 1 either way/;

/** How long a single-flight leader's lock lives without renewal. */
const FLIGHT_LEASE = 15_000;
/** How long a failed fetch's error is kept for the callers that waited on it. */
const FLIGHT_ERROR_TTL = 60_000;
/** How long the failure count of a key outlives its last failure. */
const FLIGHT_COUNTER_TTL = 3_600_000;
/** The COUNT hint of the SCAN walks behind scan(), and keys(), size() and clear() where they walk. */
const SCAN_COUNT = 100;

/** Ignores a reply: what set() resolves with. */
function nothing() {}

/** What settleWithin() rejects with when the time is up. */
const FETCH_ABANDONED = Symbol('fetch abandoned');

/**
 * Resolves or rejects as `fn()` does, or rejects with FETCH_ABANDONED after
 * `ms`; what the abandoned call does afterwards is ignored.
 */
function settleWithin(fn, ms) {
  let timer;
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(FETCH_ABANDONED), ms);
  });
  const settled = (async () => fn())();
  settled.catch(() => {});
  return Promise.race([settled, late]).finally(() => clearTimeout(timer));
}

/**
 * A key, channel or pattern must be well formed (no lone surrogate): its
 * UTF-8 bytes, which are what the store keeps, must say exactly which string
 * it was. (UTF-8 has no bytes for a lone surrogate: encoding makes it U+FFFD,
 * so 'a\ud800b' and 'a\ufffdb' would be one key.)
 */
function checkKey(key, fn, maxBytes) {
  if (typeof key !== 'string') {
    throw typeError(`${fn}: key must be a string, got ${key === null ? 'null' : typeof key}`);
  }
  if (!key.isWellFormed()) {
    throw typeError(`${fn}: the key holds a lone surrogate (half of a UTF-16 pair), which UTF-8 cannot store; it would become U+FFFD and share an entry with another key`, CODES.INVALID_ARG_VALUE);
  }
  // A UTF-16 unit is at most 3 UTF-8 bytes: only long keys need counting.
  if (key.length * 3 > maxBytes && Buffer.byteLength(key) > maxBytes) {
    throw rangeError(`${fn}: the key is ${Buffer.byteLength(key)} bytes, over maxKeyBytes (${maxBytes})`, CODES.KEY_TOO_LARGE);
  }
}

/**
 * The longest glob pattern, in UTF-8 bytes: the broker refuses longer ones
 * (src/store/glob.rs), and the same bound holds on every backend.
 */
const MAX_PATTERN_BYTES = 1024;

function checkPattern(pattern, fn) {
  if (typeof pattern !== 'string') throw typeError(`${fn}: pattern must be a string, got ${pattern === null ? 'null' : typeof pattern}`);
  if (!pattern.isWellFormed()) {
    throw typeError(`${fn}: the pattern holds a lone surrogate (half of a UTF-16 pair), which UTF-8 cannot store`, CODES.INVALID_ARG_VALUE);
  }
  if (pattern.length * 3 > MAX_PATTERN_BYTES && Buffer.byteLength(pattern) > MAX_PATTERN_BYTES) {
    throw rangeError(`${fn}: the pattern is ${Buffer.byteLength(pattern)} bytes, over the ${MAX_PATTERN_BYTES} a glob pattern may have`, CODES.PATTERN_TOO_LARGE);
  }
}

/** An AbortSignal, or undefined. */
function checkSignal(signal, fn) {
  if (signal === undefined) return;
  if (signal === null || typeof signal !== 'object' || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function') {
    throw typeError(`${fn}: signal must be an AbortSignal`);
  }
}

/**
 * `promise`, unless `signal` aborts first: then `onAbort()` runs (it takes
 * back what the call asked of the store) and the result rejects with the
 * error it returns. The promise's own outcome is still handled, so it never
 * goes unhandled.
 */
function untilAborted(promise, signal, onAbort) {
  if (!signal) return promise;
  return new Promise((resolve, reject) => {
    const abort = () => reject(onAbort());
    if (signal.aborted) return abort();
    signal.addEventListener('abort', abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', abort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener('abort', abort);
        reject(error);
      },
    );
  });
}

/**
 * A subscription that `signal` ends: aborted before it is in place, the call
 * rejects with an AbortError and the subscription is taken back once made;
 * aborted later, it unsubscribes, as an event listener given a signal does.
 */
async function withSignal(subscribe, signal, what) {
  if (signal && signal.aborted) throw abortError(signal, what);
  const subscribing = subscribe();
  if (!signal) return subscribing;
  const unsubscribe = await untilAborted(subscribing, signal, () => {
    subscribing.then((undo) => undo(), () => {}).catch(() => {});
    return abortError(signal, what);
  });
  signal.addEventListener('abort', () => unsubscribe().catch(() => {}), { once: true });
  return unsubscribe;
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

/**
 * An argument as the server matches it against a command's words: its
 * bytes, ASCII letters in upper case and nothing else folded (as Redis's
 * strcasecmp does; JS's toUpperCase would also turn 'ſ' into 'S').
 */
function commandWord(arg) {
  const bytes = typeof arg === 'string' ? arg : arg.toString('latin1');
  return bytes.replace(/[a-z]+/g, (letters) => letters.toUpperCase());
}

function toText(reply) {
  return Buffer.isBuffer(reply) ? reply.toString('utf8') : String(reply);
}

/**
 * The API every process sees. The backend decides where commands run; all
 * value encoding and argument checking happens here, once.
 */
class SharedMemory extends EventEmitter {
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
  /**
   * Locks this process holds through this handle or its namespaces (as far
   * as it knows): reads skip the near cache meanwhile.
   */
  #locks = { held: 0 };
  /** The handle this one is a namespace of, or null. */
  #parent = null;
  /** Whether the warning that key events could not be turned on was given. */
  #keyEventsWarned = false;

  /** `parent`: the handle a namespace shares its connections, near cache and queues with. */
  constructor({ backend, role, socket, options = {}, onConfigure = () => {}, parent = null }) {
    super();
    if (parent) {
      this.#parent = parent;
      this.#backend = parent.#backend;
      this.#role = parent.#role;
      this.#socket = parent.#socket;
      this.#options = { ...parent.#options, ...options };
      this.#onConfigure = () => {};
      this.#data = parent.#data;
      this.#nearCache = parent.#nearCache;
      this.#hub = parent.#hub;
      this.#updates = parent.#updates;
      this.#flights = parent.#flights;
      this.#locks = parent.#locks;
      bindMethods(this);
      return;
    }
    this.#backend = backend;
    // 'error' is emitted only to listeners: the calls it concerns reject
    // anyway, and an unheard 'error' event would throw.
    backend.onEvent = (name, detail) => {
      if (name !== 'error' || this.listenerCount('error') > 0) this.emit(name, detail);
    };
    this.#role = role;
    this.#socket = socket;
    this.#options = withPolicyDefault({ ...DEFAULTS, ...options }, options);
    this.#onConfigure = onConfigure;
    this.#data = backend;
    this.#applyNearCache();
    this.#hub = new PubSubHub((onEvent) => this.#backend.createSubscriber(onEvent), backend.db);
    if (backend.capabilities.hostsBroker) this.#applyBrokerOptions();
    bindMethods(this);
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
    if (this.#parent) {
      throw typeError('configure: a namespace takes the options of the handle it came from; configure that one', CODES.INVALID_ARG_VALUE);
    }
    validateOptions(options);
    let defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    let brokerOptions = BROKER_OPTIONS.filter((name) => name in defined);
    const { capabilities } = this.#backend;
    if (brokerOptions.length && !capabilities.ownsServer) {
      // An app moved to Redis keeps its configure() call: the server's own
      // settings (maxmemory, its persistence) do the job there.
      warnIgnored(brokerOptions, "options of cluster-shm's own broker, ignored on Redis (use the server's maxmemory, maxmemory-policy and persistence settings)");
      defined = Object.fromEntries(Object.entries(defined).filter(([name]) => !brokerOptions.includes(name)));
      brokerOptions = [];
    }
    if (brokerOptions.length && !capabilities.hostsBroker) {
      const where = capabilities.leaseLocks
        ? 'on the Redis server itself (maxmemory, maxmemory-policy, its own persistence)'
        : 'in the process that hosts the broker (the primary), before forking';
      throw typeError(`${brokerOptions.join(', ')}: broker options are set ${where}`, CODES.INVALID_ARG_VALUE);
    }
    if (defined.nearCache && !capabilities.nearCache) {
      // As with broker options on Redis, the same configure() call works on
      // every backend. On the broker, workers read the store mapped into
      // their own memory: a near cache would save no round trip and only
      // serve values that may be stale.
      warnIgnored(['nearCache'], "ignored on cluster-shm's own broker, whose workers read the store in their own memory (the near cache is for the Redis backend)");
      delete defined.nearCache;
    }
    this.#options = withPolicyDefault({ ...this.#options, ...defined }, defined, this.#options);
    if (brokerOptions.length) this.#applyBrokerOptions();
    if ('nearCache' in defined) this.#applyNearCache();
    this.#backend.reset();
    this.#onConfigure(this.options);
    return this;
  }

  /** A near cache in front of a Redis server, when the option asks for one (lib/near-cache.js). */
  #applyNearCache() {
    if (this.#nearCache) this.#nearCache.close();
    this.#nearCache = null;
    this.#data = this.#backend;
    const { nearCache } = this.#options;
    if (!nearCache || !this.#backend.capabilities.nearCache) return;
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

  /** Checks a key (or lock name) and returns it as stored: behind this handle's keyPrefix. */
  #key(key, fn) {
    const stored = typeof key === 'string' ? this.#options.keyPrefix + key : key;
    checkKey(stored, fn, this.#options.maxKeyBytes);
    return stored;
  }

  /** A key as this handle shows it: without its keyPrefix. */
  #shown(stored) {
    return stored.slice(this.#options.keyPrefix.length);
  }

  /** A glob pattern over this handle's keys, as the store matches it. */
  #storedPattern(pattern, fn) {
    checkPattern(pattern, fn);
    const stored = globEscape(this.#options.keyPrefix) + pattern;
    checkPattern(stored, fn);
    return stored;
  }

  /** Checks a pub/sub channel name: channels are not behind the keyPrefix. */
  #channel(channel, fn) {
    checkKey(channel, fn, this.#options.maxKeyBytes);
  }

  /** `inParts`: a byte value may come back as its tag and its bytes (see encodeInParts). */
  #encode(value, fn, inParts = false) {
    const encoded = inParts ? encodeInParts(value, this.#options.serialization) : encode(value, this.#options.serialization);
    // As for keys: a string of n UTF-16 units is at most 3n UTF-8 bytes.
    if (!Array.isArray(encoded) && encoded.length * 3 <= this.#options.maxValueBytes) return encoded;
    const length = encodedLength(encoded);
    if (length > this.#options.maxValueBytes) {
      throw rangeError(
        `${fn}: the encoded value is ${length} bytes, over maxValueBytes (${this.#options.maxValueBytes})`,
        CODES.VALUE_TOO_LARGE,
      );
    }
    return encoded;
  }

  // get() and set() are the calls made most: plain functions returning a
  // Promise, and a get on the mapped store decodes straight from the buffer
  // the value was copied into.
  get(key) {
    try {
      key = this.#key(key, 'get');
      if (this.#backend.capabilities.mappedStore) {
        const value = this.#backend.readLocal(key, decodeRead);
        if (value !== NOT_LOCAL) return Promise.resolve(value);
      }
      return Promise.resolve((this.#locks.held > 0 ? this.#backend : this.#data).call(['GET', key])).then(decode);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  set(key, value, options) {
    try {
      if (options === undefined && this.#backend.capabilities.mappedStore) {
        const stored = this.#key(key, 'set');
        const encoded = this.#encode(value, 'set', true);
        if (this.#backend.writeLocal(stored, encoded) !== NOT_LOCAL) return Promise.resolve();
        return Promise.resolve(this.#backend.call(['SET', stored, encoded])).then(nothing);
      }
      return Promise.resolve(this.#data.call(this.#setCommand('set', key, value, options))).then(nothing);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async has(key) {
    key = this.#key(key, 'has');
    return (await this.#data.call(['EXISTS', key])) === 1;
  }

  async delete(key) {
    key = this.#key(key, 'delete');
    return (await this.#data.call(['DEL', key])) === 1;
  }

  /**
   * Every key matching the glob pattern (of this handle's namespace, when it
   * has one). The broker answers at once from memory; on Redis, whose KEYS
   * blocks the server and every other client of it, the keys come from a
   * SCAN walk.
   */
  async keys(pattern = '*') {
    const stored = this.#storedPattern(pattern, 'keys');
    if (!this.#backend.capabilities.ownsServer) return [...(await this.#scannedKeys(stored))].map((key) => this.#shown(key));
    // The keys come as strings, not Buffers turned into strings afterwards:
    // over a socket they are decoded as they are read, in-process made by
    // the addon (the near cache passes KEYS through, so it is skipped).
    const keys = await this.#backend.callForText(['KEYS', stored]);
    return this.#options.keyPrefix ? keys.map((key) => this.#shown(key)) : keys;
  }

  /**
   * Walks the keys matching the glob pattern a batch at a time (SCAN with
   * `count` as its hint, default 100), without holding up the store: keys
   * that exist for the whole walk are yielded; keys written or deleted
   * meanwhile may or may not be, and on Redis a key may come twice.
   *
   *   for await (const key of shm.scan('user:*')) ...
   */
  async *scan(pattern = '*', options) {
    const stored = this.#storedPattern(pattern, 'scan');
    const { count = SCAN_COUNT } = callOptions(options, ['count'], 'scan');
    if (!Number.isSafeInteger(count) || count < 1) throw rangeError(`scan: count must be a positive integer, got ${count}`);
    for await (const key of this.#scanStored(stored, count)) yield this.#shown(key);
  }

  /** SCAN over every server holding keys (each master of a Redis Cluster), keys as stored. */
  async *#scanStored(pattern, count) {
    const servers = this.#backend.capabilities.cluster ? await this.#backend.eachServer() : [(args) => this.#data.call(args)];
    for (const call of servers) {
      let cursor = '0';
      do {
        const [next, keys] = await call(['SCAN', cursor, 'MATCH', pattern, 'COUNT', String(count)]);
        cursor = toText(next);
        for (const key of keys) yield toText(key);
      } while (cursor !== '0');
    }
  }

  /** How many keys the store (or this namespace) holds. */
  async size() {
    if (!this.#options.keyPrefix) return (await this.#everywhere(['DBSIZE'])).reduce((sum, n) => sum + n, 0);
    return (await this.#scannedKeys(this.#storedPattern('*', 'size'))).size;
  }

  /** The keys (as stored) a SCAN walk finds for `pattern`, each once: Redis's SCAN may yield a key twice. */
  async #scannedKeys(pattern) {
    const keys = new Set();
    for await (const key of this.#scanStored(pattern, SCAN_COUNT)) keys.add(key);
    return keys;
  }

  /**
   * Deletes every key of the store, or of this handle's namespace. On
   * Redis, which may be shared with other apps, it deletes only what SCAN
   * finds (under the keyPrefix, when there is one), never FLUSHDB.
   */
  async clear() {
    if (!this.#options.keyPrefix && this.#backend.capabilities.ownsServer) {
      await this.#everywhere(['FLUSHDB']);
      return;
    }
    let batch = [];
    const unlink = async () => {
      // A Redis Cluster refuses multi-key commands across slots: one key each there.
      if (this.#backend.capabilities.cluster) await Promise.all(batch.map((key) => this.#data.call(['UNLINK', key])));
      else if (batch.length) await this.#data.call(['UNLINK', ...batch]);
      batch = [];
    };
    for await (const key of this.#scanStored(this.#storedPattern('*', 'clear'), SCAN_COUNT)) {
      batch.push(key);
      if (batch.length >= SCAN_COUNT) await unlink();
    }
    await unlink();
  }

  /**
   * A handle on the same store whose keys live under `name` + separator
   * (default ':'): its keys(), scan(), size() and clear() see only them,
   * and every key and lock name it is given is stored behind that prefix.
   * Pub/sub channels are not prefixed. A namespace shares its parent's
   * connections and options; configure() and close() belong to the parent.
   */
  namespace(name, options) {
    const { separator = ':' } = callOptions(options, ['separator'], 'namespace');
    if (typeof name !== 'string' || name === '') throw typeError('namespace: name must be a non-empty string');
    if (typeof separator !== 'string') throw typeError('namespace: separator must be a string');
    const keyPrefix = this.#options.keyPrefix + name + separator;
    checkKey(keyPrefix, 'namespace', this.#options.maxKeyBytes);
    return new SharedMemory({ parent: this, options: { keyPrefix } });
  }

  /** Runs a command on every server holding keys (the masters of a Redis Cluster): a list of replies. */
  async #everywhere(args) {
    return this.#backend.capabilities.cluster ? this.#data.callAll(args) : [await this.#data.call(args)];
  }

  async mget(keys) {
    if (!Array.isArray(keys)) throw typeError('mget: keys must be an array of strings');
    const stored = keys.map((key) => this.#key(key, 'mget'));
    if (stored.length === 0) return [];
    return (await this.#data.call(['MGET', ...stored])).map((stored) => decode(stored));
  }

  async mset(entries) {
    const pairs = toPairs(entries);
    if (pairs.length === 0) return;
    const args = ['MSET'];
    for (const [key, value] of pairs) {
      args.push(this.#key(key, 'mset'), this.#encode(value, 'mset'));
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
    key = this.#key(key, 'incr');
    return this.#increment(key, by, 'incr');
  }

  /** `incr(key, -by)`. */
  async decr(key, by = 1) {
    key = this.#key(key, 'decr');
    if (typeof by !== 'number') throw typeError(`decr: by must be a number, got ${typeof by}`);
    return this.#increment(key, -by, 'decr');
  }

  async #increment(key, by, fn) {
    if (typeof by !== 'number') throw typeError(`${fn}: by must be a number, got ${typeof by}`);
    if (!Number.isFinite(by)) throw rangeError(`${fn}: by must be finite, got ${by}`);
    if (Number.isInteger(by)) {
      if (!Number.isSafeInteger(by)) throw rangeError(`${fn}: by must be a safe integer, got ${by}`);
      // INCRBY, except that a result a number could not hold exactly is
      // refused in the store, changing nothing, instead of coming back rounded.
      try {
        return await this.#data.call(['SHM.INCRBY', key, String(by)]);
      } catch (error) {
        if (error.code === CODES.SERVER && SAFE_RANGE_ERROR.test(error.message)) {
          throw rangeError(`${fn}: the result would pass 2^53 - 1 either way (Number.MAX_SAFE_INTEGER), beyond which a number does not hold every integer; the key is unchanged`);
        }
        throw error;
      }
    }
    return Number(toText(await this.#data.call(['INCRBYFLOAT', key, String(by)])));
  }

  /**
   * A checked SET command for `fn`: key, encoded value, the given SET
   * options, and PX for a `{ ttl }` option (or `withoutTtl` when none).
   */
  #setCommand(fn, key, value, options, setOptions = [], withoutTtl = []) {
    return this.#setArgs(fn, this.#key(key, fn), value, options, setOptions, withoutTtl);
  }

  /** #setCommand for a key already as stored. */
  #setArgs(fn, key, value, options, setOptions = [], withoutTtl = []) {
    const { ttl } = callOptions(options, ['ttl'], fn);
    const ms = checkTtl(ttl, fn);
    const encoded = this.#encode(value, fn, this.#backend.capabilities.mappedStore);
    return ['SET', key, encoded, ...setOptions, ...(ms === undefined ? withoutTtl : ['PX', String(ms)])];
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
    key = this.#key(key, 'getAndDelete');
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
    key = this.#key(key, 'update');
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
    key = this.#key(key, 'getOrSet');
    if (typeof fetcher !== 'function') throw typeError('getOrSet: fetcher must be a function');
    const { ttl, timeout = 30_000, fetchTimeout = this.#options.fetchTimeout, signal } = callOptions(options, ['ttl', 'timeout', 'fetchTimeout', 'signal'], 'getOrSet');
    const ms = checkTtl(ttl, 'getOrSet');
    const wait = checkTimeout(timeout, 'getOrSet');
    positiveMilliseconds(fetchTimeout, 'getOrSet: fetchTimeout');
    checkSignal(signal, 'getOrSet');
    const what = `getOrSet "${this.#shown(key)}"`;
    if (signal && signal.aborted) throw abortError(signal, what);
    // Callers of this process share one flight; it is withdrawn (its lock
    // wait taken back) only once every caller waiting on it has aborted.
    let flight = this.#flights.get(key);
    if (!flight) {
      const withdrawn = new AbortController();
      const promise = this.#fetchOnce(key, fetcher, ms, wait, fetchTimeout, withdrawn.signal).finally(() => this.#flights.delete(key));
      promise.catch(() => {}); // its callers handle its outcome; one withdrawn has none
      flight = { promise, withdrawn, callers: 0 };
      this.#flights.set(key, flight);
    }
    flight.callers++;
    return untilAborted(flight.promise, signal, () => {
      if (--flight.callers === 0) flight.withdrawn.abort();
      return abortError(signal, what);
    });
  }

  async #fetchOnce(key, fetcher, ttl, timeout, fetchTimeout, signal) {
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
    const lock = await this.#acquire(`__shm:flight:${key}`, { ttl: FLIGHT_LEASE, timeout, signal });
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
        value = await settleWithin(fetcher, fetchTimeout);
        if (value === undefined) throw typeError('getOrSet: fetcher resolved with undefined, which cannot be stored', CODES.INVALID_ARG_VALUE);
      } catch (error) {
        // A fetch that never settles is abandoned, not shared: the lock
        // goes (below) and the next caller fetches instead.
        if (error === FETCH_ABANDONED) {
          throw shmError(CODES.FETCH_TIMEOUT, `getOrSet: the fetcher for "${key}" did not settle within ${fetchTimeout} ms (fetchTimeout); the next caller fetches instead`);
        }
        const failed = await this.#data.call(['INCR', failuresKey]);
        await this.#data.call(['PEXPIRE', failuresKey, String(FLIGHT_COUNTER_TTL)]);
        const record = { failed, error: { message: String(error && error.message), name: error && error.name, code: error && error.code } };
        await this.#data.call(['SET', errorKey, JSON.stringify(record), 'PX', String(FLIGHT_ERROR_TTL)]);
        throw error;
      }
      await this.#data.call(this.#setArgs('getOrSet', key, value, ttl === undefined ? undefined : { ttl }));
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
    return this.#acquire(this.#key(name, 'lock'), options);
  }

  /**
   * Sends SHM.UNLOCK for a wait or grant nobody waits for any more; its
   * outcome is dropped. In the primary the call is synchronous (it may
   * throw, and returns no Promise).
   */
  #unlockQuietly(name, token) {
    try {
      Promise.resolve(this.#data.call(['SHM.UNLOCK', name, token])).catch(() => {});
    } catch {}
  }

  /** lock() for a name already as stored. */
  async #acquire(name, options) {
    const { ttl = 30_000, timeout = 10_000, signal } = callOptions(options, ['ttl', 'timeout', 'signal'], 'lock');
    checkSignal(signal, 'lock');
    const what = `lock "${this.#shown(name)}"`;
    if (signal && signal.aborted) throw abortError(signal, what);
    const ttlMs = checkTtl(ttl, 'lock');
    const leases = this.#backend.capabilities.leaseLocks;
    const ms = String(leases ? Math.min(ttlMs, this.#options.lockLease) : ttlMs);
    const wait = checkTimeout(timeout, 'lock');
    const token = randomBytes(16).toString('hex');
    let fence;
    try {
      fence = await this.#data.call(['SHM.LOCK', name, token, ms]);
      if (fence === null && wait > 0) {
        // An abort withdraws the wait (SHM.UNLOCK of this token also takes
        // back a grant that crossed it on the way).
        fence = await untilAborted(this.#backend.callBlocking(['SHM.LOCK', name, token, ms, 'WAIT', String(wait)], wait, signal), signal, () => {
          this.#unlockQuietly(name, token);
          return abortError(signal, what);
        });
      }
    } catch (error) {
      // The broker may still grant what it did not answer in time: take it
      // back (it releases the lock, or withdraws the wait, of this token),
      // or nobody would hold the lock until its ttl passed.
      if (error.code === CODES.TIMEOUT) this.#unlockQuietly(name, token);
      throw error;
    }
    if (fence === null) throw lockTimeout(name, wait);
    // While this process holds a lock, its reads skip the near cache: what
    // the lock protects may have been written just before it was granted,
    // by a process whose invalidation is still on its way.
    this.#locks.held++;
    const onRelease = () => {
      this.#locks.held--;
    };
    return new Lock((args) => this.#data.call(args), name, token, fence, { ttl: ttlMs, lease: leases ? this.#options.lockLease : undefined, onRelease });
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
    key = this.#key(key, 'rateLimit');
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
    key = this.#key(key, 'expire');
    if (ttl === undefined) throw typeError('expire: ttl is required');
    return (await this.#data.call(['PEXPIRE', key, String(checkTtl(ttl, 'expire'))])) === 1;
  }

  /** Milliseconds left: undefined for a missing key, Infinity for no expiry. */
  async ttl(key) {
    key = this.#key(key, 'ttl');
    const left = await this.#data.call(['PTTL', key]);
    if (left === -2) return undefined;
    return left === -1 ? Infinity : left;
  }

  /** Removes a key's expiry; false when it had none or does not exist. */
  async persist(key) {
    key = this.#key(key, 'persist');
    return (await this.#data.call(['PERSIST', key])) === 1;
  }

  /** Store and broker statistics, from INFO. */
  async stats() {
    // A Redis Cluster answers per master: counts and sizes are summed.
    const servers = (await this.#everywhere(['INFO'])).map(parseInfo);
    const fields = servers[0];
    const db = this.#backend.db;
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
    const argv = [name];
    for (const arg of args) {
      if (typeof arg === 'string' || Buffer.isBuffer(arg)) argv.push(arg);
      else if (types.isUint8Array(arg)) argv.push(Buffer.from(arg.buffer, arg.byteOffset, arg.byteLength));
      else if (typeof arg === 'number' && Number.isFinite(arg)) argv.push(String(arg));
      else throw typeError('command: arguments must be strings, finite numbers, Buffers or Uint8Arrays');
    }
    // The server reads a command's words as bytes, whatever the caller
    // passed them as: they are compared so here too.
    const upper = commandWord(name);
    const subcommand = upper === 'CLIENT' && argv.length > 1 ? commandWord(argv[1]) : '';
    if (
      CONNECTION_STATE_COMMANDS.has(upper) ||
      CONNECTION_STATE_CLIENT.has(subcommand) ||
      (upper === 'SHM.LOCK' && argv.some((arg, i) => i > 0 && arg.length === 4 && commandWord(arg) === 'WAIT'))
    ) {
      throw typeError(
        `command: ${upper}${upper === 'CLIENT' ? ` ${subcommand}` : ''} would change the connection every call of this process shares; use subscribe(), update(), lock() or the nearCache option instead`,
        CODES.INVALID_ARG_VALUE,
      );
    }
    return this.#data.call(argv);
  }

  /**
   * Publishes a message (any value `set` accepts, with its type kept) to
   * every subscriber of the channel in every process; resolves with how
   * many subscriptions received it.
   */
  async publish(channel, message) {
    this.#channel(channel, 'publish');
    return this.#data.call(['PUBLISH', channel, this.#encode(message, 'publish')]);
  }

  /**
   * Calls `listener(message, channel)` for every message published to
   * `channel`, or to any channel matching it when it is a glob pattern
   * (contains `*`, `?` or `[`; pass `{ pattern: false }` for a literal
   * name). Resolves, once the broker delivers to it, with an async function
   * that unsubscribes. `onMissed({ reason })` is called when messages may
   * have been lost ('reconnected': the connection was lost and made again;
   * 'overflow': messages were dropped because this process fell behind);
   * subscriptions are restored by themselves.
   */
  async subscribe(channel, listener, options) {
    this.#channel(channel, 'subscribe');
    if (typeof listener !== 'function') throw typeError('subscribe: listener must be a function');
    const { pattern, onMissed, signal } = callOptions(options, ['pattern', 'onMissed', 'signal'], 'subscribe');
    if (onMissed !== undefined && typeof onMissed !== 'function') throw typeError('subscribe: onMissed must be a function');
    checkSignal(signal, 'subscribe');
    const isPattern = pattern === undefined ? /[*?[]/.test(channel) : Boolean(pattern);
    if (isPattern) checkPattern(channel, 'subscribe');
    return withSignal(() => this.#hub.add(isPattern ? 'pattern' : 'channel', channel, { listener, onMissed }), signal, `subscribe "${channel}"`);
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
    const { onMissed, pattern, signal } = callOptions(options, ['onMissed', 'pattern', 'signal'], 'watch');
    if (onMissed !== undefined && typeof onMissed !== 'function') throw typeError('watch: onMissed must be a function');
    checkSignal(signal, 'watch');
    const what = `watch "${keyOrPattern}"`;
    const isPattern = pattern === undefined ? /[*?[]/.test(keyOrPattern) : Boolean(pattern);
    const { keyPrefix } = this.#options;
    if (keyPrefix) {
      // Events name keys as this handle shows them.
      const shown = listener;
      listener = (event) => shown({ ...event, key: this.#shown(event.key) });
      keyOrPattern = isPattern ? globEscape(keyPrefix) + keyOrPattern : keyPrefix + keyOrPattern;
    }
    if (this.#backend.capabilities.cluster) {
      // Redis Cluster publishes key events only on the node that holds the
      // key, and a subscription connection listens to one node.
      throw shmError(CODES.UNSUPPORTED, 'watch: key events are not supported on a Redis Cluster (each node publishes only its own keys)');
    }
    const channel = this.#hub.keyspaceChannel(keyOrPattern);
    if (isPattern) checkPattern(channel, 'watch');
    return withSignal(
      async () => {
        await this.#enableKeyspaceEvents();
        return this.#hub.add(isPattern ? 'pattern' : 'channel', channel, { listener, onMissed, keyEvents: true });
      },
      signal,
      what,
    );
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

  /** Closes this process's connections, or in the primary, the broker. A namespace's close() does nothing: its parent owns them. */
  async close() {
    if (this.#parent) return;
    if (this.#nearCache) this.#nearCache.close();
    this.#hub.close();
    this.#backend.close();
  }
}

/** Options that do nothing on this backend: a warning saying `why`, once per process and option. */
const warnedIgnored = new Set();
function warnIgnored(names, why) {
  const fresh = names.filter((name) => !warnedIgnored.has(name));
  if (fresh.length === 0) return;
  for (const name of fresh) warnedIgnored.add(name);
  process.emitWarning(`${fresh.join(', ')}: ${why}`, { code: CODES.IGNORED_OPTION });
}

/**
 * Every method as an own property bound to its handle, so that
 * `const { get } = require('cluster-shm')` and named ESM imports work.
 */
function bindMethods(handle) {
  for (const name of Object.getOwnPropertyNames(SharedMemory.prototype)) {
    const { value } = Object.getOwnPropertyDescriptor(SharedMemory.prototype, name);
    if (name !== 'constructor' && typeof value === 'function') {
      Object.defineProperty(handle, name, { value: value.bind(handle), writable: true, configurable: true });
    }
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

module.exports = { SharedMemory };

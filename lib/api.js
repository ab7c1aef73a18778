'use strict';

const { encode, decode, encodedLength } = require('./codec');
const { CODES, shmError, typeError, rangeError, fromNative } = require('./errors');
const { DEFAULTS, validateOptions, callOptions, checkTtl } = require('./options');

/** Runs commands against the store in this process (the primary). */
class InProcessBackend {
  constructor(broker) {
    this.broker = broker;
  }

  call(args) {
    try {
      return this.broker.call(args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  close() {
    this.broker.close();
  }
}

/** Sends commands over the broker's socket (workers, other processes). */
class RemoteBackend {
  constructor(createClient) {
    this.createClient = createClient;
    this.client = null;
  }

  call(args) {
    if (this.client === null) this.client = this.createClient();
    return this.client.call(args).catch(rethrowNative);
  }

  /** New timeouts apply to the next connection; calls in flight finish on the old one. */
  reset() {
    this.client = null;
  }

  close() {
    if (this.client) this.client.close();
    this.createClient = () => {
      throw shmError(CODES.CLOSED, 'the cluster-shm connection is closed');
    };
    this.client = null;
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

  call() {
    throw this.error;
  }

  close() {}
}

function checkKey(key, fn) {
  if (typeof key !== 'string') {
    throw typeError(`${fn}: key must be a string, got ${key === null ? 'null' : typeof key}`);
  }
}

function checkKeys(keys, fn) {
  if (!Array.isArray(keys)) throw typeError(`${fn}: keys must be an array of strings`);
  keys.forEach((key) => checkKey(key, fn));
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
  #options;
  #role;
  #socket;
  #onConfigure;

  constructor({ backend, role, socket, options = {}, onConfigure = () => {} }) {
    this.#backend = backend;
    this.#role = role;
    this.#socket = socket;
    this.#options = { ...DEFAULTS, ...options };
    this.#onConfigure = onConfigure;
  }

  /** 'primary' (hosts the broker), 'worker' (cluster worker) or 'client'. */
  get role() {
    return this.#role;
  }

  /** Path of the broker's socket, or undefined where there is none. */
  get socket() {
    return this.#socket;
  }

  /** The options in force in this process. */
  get options() {
    return { ...this.#options };
  }

  configure(options) {
    validateOptions(options);
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.#options = { ...this.#options, ...defined };
    if (this.#backend.reset) this.#backend.reset();
    this.#onConfigure(this.options);
    return this;
  }

  #encode(value, fn) {
    const encoded = encode(value, this.#options.serialization);
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
    checkKey(key, 'get');
    return decode(await this.#backend.call(['GET', key]));
  }

  async set(key, value, options) {
    checkKey(key, 'set');
    const { ttl } = callOptions(options, ['ttl'], 'set');
    const ms = checkTtl(ttl, 'set');
    const args = ['SET', key, this.#encode(value, 'set')];
    if (ms !== undefined) args.push('PX', String(ms));
    await this.#backend.call(args);
  }

  async has(key) {
    checkKey(key, 'has');
    return (await this.#backend.call(['EXISTS', key])) === 1;
  }

  async delete(key) {
    checkKey(key, 'delete');
    return (await this.#backend.call(['DEL', key])) === 1;
  }

  async keys(pattern = '*') {
    if (typeof pattern !== 'string') throw typeError('keys: pattern must be a string');
    return (await this.#backend.call(['KEYS', pattern])).map(toText);
  }

  async size() {
    return this.#backend.call(['DBSIZE']);
  }

  async clear() {
    await this.#backend.call(['FLUSHDB']);
  }

  async mget(keys) {
    checkKeys(keys, 'mget');
    if (keys.length === 0) return [];
    return (await this.#backend.call(['MGET', ...keys])).map(decode);
  }

  async mset(entries) {
    const pairs = toPairs(entries);
    if (pairs.length === 0) return;
    const args = ['MSET'];
    for (const [key, value] of pairs) {
      checkKey(key, 'mset');
      args.push(key, this.#encode(value, 'mset'));
    }
    await this.#backend.call(args);
  }

  /**
   * Adds `by` to the number at `key` atomically (a missing key counts as 0)
   * and resolves with the result. An integer `by` works on integers
   * (INCRBY, with Redis's overflow and not-an-integer errors); a fractional
   * one on any number (INCRBYFLOAT). The key keeps its ttl.
   */
  async incr(key, by = 1) {
    checkKey(key, 'incr');
    return this.#increment(key, by, 'incr');
  }

  /** `incr(key, -by)`. */
  async decr(key, by = 1) {
    checkKey(key, 'decr');
    if (typeof by !== 'number') throw typeError(`decr: by must be a number, got ${typeof by}`);
    return this.#increment(key, -by, 'decr');
  }

  async #increment(key, by, fn) {
    if (typeof by !== 'number') throw typeError(`${fn}: by must be a number, got ${typeof by}`);
    if (!Number.isFinite(by)) throw rangeError(`${fn}: by must be finite, got ${by}`);
    if (Number.isInteger(by)) {
      if (!Number.isSafeInteger(by)) throw rangeError(`${fn}: by must be a safe integer, got ${by}`);
      return this.#backend.call(['INCRBY', key, String(by)]);
    }
    return Number(toText(await this.#backend.call(['INCRBYFLOAT', key, String(by)])));
  }

  /** Sets a key's time to live; false when the key does not exist. */
  async expire(key, ttl) {
    checkKey(key, 'expire');
    if (ttl === undefined) throw typeError('expire: ttl is required');
    return (await this.#backend.call(['PEXPIRE', key, String(checkTtl(ttl, 'expire'))])) === 1;
  }

  /** Milliseconds left: undefined for a missing key, Infinity for no expiry. */
  async ttl(key) {
    checkKey(key, 'ttl');
    const left = await this.#backend.call(['PTTL', key]);
    if (left === -2) return undefined;
    return left === -1 ? Infinity : left;
  }

  /** Removes a key's expiry; false when it had none or does not exist. */
  async persist(key) {
    checkKey(key, 'persist');
    return (await this.#backend.call(['PERSIST', key])) === 1;
  }

  /** Store and broker statistics, from INFO. */
  async stats() {
    const info = toText(await this.#backend.call(['INFO']));
    const fields = {};
    for (const line of info.split('\r\n')) {
      const at = line.indexOf(':');
      if (at > 0 && !line.startsWith('#')) fields[line.slice(0, at)] = line.slice(at + 1);
    }
    const keyspace = /keys=(\d+),expires=(\d+)/.exec(fields.db0 || '') || [0, 0, 0];
    const number = (name) => Number(fields[name] || 0);
    return {
      keys: Number(keyspace[1]),
      keysWithTtl: Number(keyspace[2]),
      usedMemory: number('used_memory'),
      peakMemory: number('used_memory_peak'),
      residentMemory: number('used_memory_rss'),
      expiredKeys: number('expired_keys'),
      evictedKeys: number('evicted_keys'),
      keyspaceHits: number('keyspace_hits'),
      keyspaceMisses: number('keyspace_misses'),
      connectedClients: number('connected_clients'),
      totalCommands: number('total_commands_processed'),
      uptimeSeconds: number('uptime_in_seconds'),
      version: fields.cluster_shm_version,
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
      else if (typeof arg === 'number' && Number.isFinite(arg)) argv.push(String(arg));
      else throw typeError('command: arguments must be strings, finite numbers or Buffers');
    }
    return this.#backend.call(argv);
  }

  /** Closes this process's connection, or in the primary, the broker. */
  async close() {
    this.#backend.close();
  }
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

'use strict';

/**
 * The Redis backend: the whole API against a Redis or Valkey server (or a
 * Redis Cluster), through ioredis. See index.js for the contract.
 *
 * The API sends the same commands to every backend. The few this broker
 * has and Redis lacks run here as Lua scripts with the same semantics:
 * SET … IFEQ and DELEX … IFEQ (native only from Redis 8.4), SHM.INCRBY, SHM.RATELIMIT,
 * and the locks (SHM.LOCK/UNLOCK/EXTEND). A Redis lock is a lease: a key
 * set with NX PX and a random token, kept alive by its holder (lib/lock.js),
 * so a crashed holder's lock ends when its lease does.
 */

const { CODES, shmError } = require('../errors');
const { INVALIDATE_CHANNEL } = require('../near-cache');

/** Commands whose reply is a simple string ("OK"), kept as a JS string as the broker's client does. */
const STATUS_REPLY = new Set(['MSET', 'FLUSHDB', 'FLUSHALL', 'PING', 'TYPE', 'RENAME', 'SAVE', 'BGSAVE', 'SELECT', 'SWAPDB', 'QUIT', 'CONFIG']);

/** Commands that run on every master of a Redis Cluster: their replies are combined by the caller. */
const BROADCAST = new Set(['KEYS', 'DBSIZE', 'FLUSHDB', 'FLUSHALL', 'INFO']);

/** How long a lock waiter sleeps at most between tries. */
const LOCK_POLL_MAX = 50;

const SCRIPTS = {
  // SET key value IFEQ expected [options…]: set only if the value is `expected`.
  shmSetIfEq: {
    numberOfKeys: 1,
    lua: `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
return redis.call('SET', KEYS[1], ARGV[2], unpack(ARGV, 3))`,
  },
  // DELEX key IFEQ expected: delete only if the value is `expected`; also
  // SHM.UNLOCK, whose lock key holds the holder's token.
  shmDelIfEq: {
    numberOfKeys: 1,
    lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`,
  },
  // SHM.LOCK: KEYS = lock; ARGV = token, lease ms. The fencing token is the
  // server's clock in microseconds at the grant: it increases with every
  // grant and needs no key that would outlive the lock.
  shmLock: {
    numberOfKeys: 1,
    lua: `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
return false`,
  },
  // SHM.EXTEND: KEYS = lock; ARGV = token, ms.
  shmExtend: {
    numberOfKeys: 1,
    lua: `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`,
  },
  // SHM.INCRBY key increment: INCRBY, taken back within the script (no
  // other command sees it; key events and invalidations for both are still
  // sent) and refused when the result passes ±(2^53 - 1), as the broker
  // refuses it (src/cmd/strings.rs), exactly. Lua's numbers are doubles: a
  // result past 2^53 - 1 arrives rounded, but still past it. INCRBY's own
  // errors are handed on as they are (pcall: without the script's name).
  shmIncrBy: {
    numberOfKeys: 1,
    lua: `local n = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(n) == 'table' then return n end
if n > 9007199254740991 or n < -9007199254740991 then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return redis.error_reply('ERR increment or decrement would pass 2^53 - 1 either way, beyond which a JavaScript number does not hold every integer')
end
return n`,
  },
  // SHM.RATELIMIT key points window [SLIDING]: the broker's algorithm
  // (src/cmd/ratelimit.rs) and state format, on the server's clock.
  shmRateLimit: {
    numberOfKeys: 1,
    lua: `local points, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if not points or not window or points < 1 or window < 1 or points % 1 ~= 0 or window % 1 ~= 0 then
  return redis.error_reply('ERR points and window must be positive integers')
end
local wrong = 'WRONGTYPE the key does not hold a rate limit'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stored = redis.call('GET', KEYS[1])
if ARGV[3] ~= 'SLIDING' then
  local count, reset = 0, window
  if stored then
    count = tonumber(stored)
    reset = redis.call('PTTL', KEYS[1])
    if not count or reset < 0 then return redis.error_reply(wrong) end
  end
  if count >= points then return {0, 0, reset} end
  if stored then
    redis.call('SET', KEYS[1], string.format('%d', count + 1), 'KEEPTTL')
  else
    redis.call('SET', KEYS[1], '1', 'PX', window)
  end
  return {1, points - count - 1, reset}
end
local start, current, previous = now - now % window, 0, 0
if stored then
  local s, c, p = string.match(stored, '^(%d+):(%d+):(%d+)$')
  if not s then return redis.error_reply(wrong) end
  s, c, p = math.min(tonumber(s), start), tonumber(c), tonumber(p)
  if now < s + window then
    start, current, previous = s, c, p
  elseif now < s + 2 * window then
    current, previous = 0, c
  end
end
local elapsed = math.min(now - start, window)
local used = previous * (window - elapsed) / window + current
if used + 1 > points then
  local wait = window - elapsed
  if previous > 0 then wait = math.ceil((used + 1 - points) / previous * window) end
  return {0, 0, math.max(1, math.min(wait, window - elapsed))}
end
redis.call('SET', KEYS[1], string.format('%d:%d:%d', start, current + 1, previous), 'PXAT', string.format('%d', start + 2 * window))
return {1, math.max(0, math.floor(points - used - 1)), window - elapsed}`,
  },
};

/** The key of the lease behind the lock `name` (a hash tag of its own in a cluster). */
function lockKey(name) {
  return `__shm:lock:{${name}}`;
}

/**
 * Where a Redis backend connects: a URL (`redis://`, `rediss://`,
 * `redis+unix:///path`, `redis+cluster://host:port,host:port`,
 * `rediss+cluster://…`) or `{ cluster: [{ host, port }, …] }`.
 */
function parseTarget(target) {
  if (target && typeof target === 'object' && Array.isArray(target.cluster)) {
    return { cluster: true, nodes: target.cluster, options: { ...(target.redisOptions || {}) }, db: 0, display: 'redis cluster' };
  }
  if (typeof target !== 'string') throw new TypeError('a Redis target is a URL or { cluster: [...] }');
  let url;
  try {
    // A cluster URL lists several hosts, which URL() refuses: it parses the
    // rest with the first host in their place.
    url = new URL(target.replace(/^([a-z+]+:\/\/(?:[^@/]*@)?)([^,/?]*)(?:,[^/?]*)+/, '$1$2'));
  } catch {
    throw shmError(CODES.INVALID_ARG_VALUE, `not a Redis URL: ${JSON.stringify(redact(target))}`);
  }
  const auth = {};
  if (url.username) auth.username = decodeURIComponent(url.username);
  if (url.password) auth.password = decodeURIComponent(url.password);
  const display = redact(target);
  const query = url.searchParams;
  switch (url.protocol) {
    case 'redis:':
    case 'rediss:': {
      const db = Number(url.pathname.slice(1) || query.get('db') || 0);
      if (!Number.isSafeInteger(db) || db < 0) throw shmError(CODES.INVALID_ARG_VALUE, `bad database number in ${display}`);
      const options = { ...auth, host: url.hostname || '127.0.0.1', port: Number(url.port || 6379), db };
      if (url.protocol === 'rediss:') options.tls = { servername: url.hostname };
      return { cluster: false, options, db, display };
    }
    case 'redis+unix:':
    case 'unix:': {
      const db = Number(query.get('db') || 0);
      if (!Number.isSafeInteger(db) || db < 0) throw shmError(CODES.INVALID_ARG_VALUE, `bad database number in ${display}`);
      if (query.get('password')) auth.password = query.get('password');
      return { cluster: false, options: { ...auth, path: decodeURIComponent(url.pathname), db }, db, display };
    }
    case 'redis+cluster:':
    case 'rediss+cluster:': {
      // URL() keeps only the first host; the list is read from the text.
      const hosts = target.replace(/^[a-z+]+:\/\/([^@/]*@)?/, '').split(/[/?]/, 1)[0];
      const nodes = hosts.split(',').map((hostPort) => {
        const at = hostPort.lastIndexOf(':');
        return at > 0 ? { host: hostPort.slice(0, at), port: Number(hostPort.slice(at + 1)) } : { host: hostPort, port: 6379 };
      });
      const options = { ...auth };
      if (url.protocol === 'rediss+cluster:') options.tls = {};
      return { cluster: true, nodes, options, db: 0, display };
    }
    default:
      throw shmError(CODES.INVALID_ARG_VALUE, `unsupported Redis URL scheme "${url.protocol}" (redis:, rediss:, redis+unix:, redis+cluster:, rediss+cluster:)`);
  }
}

/** The URL without its password, for messages. */
function redact(text) {
  // Up to the last '@' of the authority: a password may hold '@' or '/'.
  return String(text)
    .replace(/^([a-z+]+:\/\/)([^?#]*)@/i, (whole, scheme, userinfo) => `${scheme}${userinfo.includes(':') ? `${userinfo.split(':', 1)[0]}:***` : '***'}@`)
    .replace(/([?&]password=)[^&]*/, '$1***');
}

/**
 * Keeps the process alive while calls are in flight, and only then: the
 * sockets themselves are unreferenced, as an idle broker connection is.
 */
class Liveness {
  #inFlight = 0;
  #timer = null;

  hold() {
    if (this.#inFlight++ === 0) this.#timer = setInterval(() => {}, 2 ** 30);
  }

  release() {
    if (--this.#inFlight === 0) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }
}

function unrefOnConnect(connection) {
  connection.on('connect', () => {
    if (connection.stream && connection.stream.unref) connection.stream.unref();
  });
}

class RedisBackend {
  #target;
  #capabilities;
  #connectionOptions;
  #client = null;
  #liveness = new Liveness();
  #closed = false;
  #generation = 0;
  /** Why the connection last failed, for the messages of the calls it fails. */
  #lastError = null;

  /**
   * `connectionOptions()` gives { connectTimeout, commandTimeout } from the
   * options in force.
   */
  constructor(target, connectionOptions) {
    this.#target = parseTarget(target);
    this.#capabilities = Object.freeze({ hostsBroker: false, ownsServer: false, leaseLocks: true, cluster: this.#target.cluster, nearCache: true, mappedStore: false });
    this.#connectionOptions = connectionOptions;
    /** Set by the handle: hears 'error' and 'reconnect' from the client. */
    this.onEvent = () => {};
  }

  /**
   * A Redis server may be shared with other apps and blocks on KEYS: keys()
   * walks with SCAN and clear() deletes what it finds, never FLUSHDB. Locks
   * are leases that their holder keeps alive.
   */
  get capabilities() {
    return this.#capabilities;
  }

  /** Changes whenever calls start going over a new connection (single server). */
  get generation() {
    return this.#generation;
  }

  /** The database in use (its number names its keyspace channels and INFO line). */
  get db() {
    return this.#target.db;
  }

  /** What the backend is, for messages: the URL without its password. */
  get display() {
    return this.#target.display;
  }

  #options(extra = {}) {
    const { connectTimeout, commandTimeout } = this.#connectionOptions();
    return {
      ...this.#target.options,
      connectTimeout,
      commandTimeout,
      protocol: 2,
      lazyConnect: true,
      // Calls fail while the server is away, and the next call reconnects,
      // as with the broker: nothing retries in the background.
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableReadyCheck: true,
      ...extra,
    };
  }

  #connection() {
    if (this.#closed) throw shmError(CODES.CLOSED, 'the cluster-shm connection is closed');
    if (this.#client === null) {
      const Redis = require('ioredis');
      if (this.#target.cluster) {
        const redisOptions = this.#options();
        this.#client = new Redis.Cluster(this.#target.nodes, {
          redisOptions,
          lazyConnect: true,
          clusterRetryStrategy: () => null,
          enableOfflineQueue: true,
          slotsRefreshTimeout: redisOptions.connectTimeout,
        });
        this.#client.on('+node', (node) => unrefOnConnect(node));
      } else {
        this.#client = new Redis(this.#options());
        unrefOnConnect(this.#client);
        // Connection state (CLIENT TRACKING) is gone with the connection.
        this.#client.on('ready', () => this.#generation++);
        this.#client.on('close', () => this.#generation++);
      }
      for (const [name, script] of Object.entries(SCRIPTS)) this.#client.defineCommand(name, script);
      // Failures reach the calls that were waiting; the last one's reason
      // (a refused connection, a certificate) goes into their message.
      this.#client.on('error', (error) => {
        this.#lastError = error && error.message;
        this.onEvent('error', this.#error(error));
      });
      let readyBefore = false;
      let connected = false;
      this.#client.on('ready', () => {
        this.#lastError = null;
        if (readyBefore) this.onEvent('reconnect', { url: this.#target.display });
        readyBefore = true;
        connected = true;
      });
      // A server that goes away closes the connection without an error.
      this.#client.on('close', () => {
        if (connected && !this.#closed) this.onEvent('error', shmError(CODES.UNREACHABLE, `lost the connection to ${this.#target.display}`));
        connected = false;
      });
    }
    const client = this.#client;
    if (client.status === 'end' || client.status === 'close') client.connect().catch(() => {});
    return client;
  }

  call(args) {
    let client;
    try {
      client = this.#connection();
    } catch (error) {
      return Promise.reject(error);
    }
    const name = typeof args[0] === 'string' ? args[0].toUpperCase() : String(args[0]).toUpperCase();
    let sent;
    try {
      sent = this.#send(client, name, args);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#liveness.hold();
    return sent
      .then(
        (reply) => (STATUS_REPLY.has(name) || (name === 'SET' && !hasOption(args, 'GET')) ? asStatus(reply) : reply),
        (error) => {
          throw this.#error(error);
        },
      )
      .finally(() => this.#liveness.release());
  }

  #send(client, name, args) {
    const rest = args.slice(1);
    switch (name) {
      case 'SET': {
        const at = rest.findIndex((arg, i) => i >= 2 && isWord(arg, 'IFEQ'));
        if (at < 0) break;
        return client.shmSetIfEqBuffer(rest[0], rest[at + 1], rest[1], ...rest.slice(2, at), ...rest.slice(at + 2));
      }
      case 'DELEX':
        if (rest.length === 3 && isWord(rest[1], 'IFEQ')) return client.shmDelIfEqBuffer(rest[0], rest[2]);
        break;
      case 'SHM.LOCK':
        return client.shmLockBuffer(lockKey(text(rest[0])), rest[1], rest[2]);
      case 'SHM.UNLOCK':
        return client.shmDelIfEqBuffer(lockKey(text(rest[0])), rest[1]);
      case 'SHM.EXTEND':
        return client.shmExtendBuffer(lockKey(text(rest[0])), rest[1], rest[2]);
      case 'SHM.INCRBY':
        return client.shmIncrByBuffer(rest[0], rest[1]);
      case 'SHM.RATELIMIT':
        return client.shmRateLimitBuffer(rest[0], rest[1], rest[2], rest[3] === undefined ? '' : text(rest[3]).toUpperCase());
      default:
        if (this.#target.cluster && BROADCAST.has(name)) {
          throw shmError(CODES.UNSUPPORTED, `${name} would run on one node of a Redis Cluster: use keys(), size(), clear() or stats(), which ask every master`);
        }
    }
    return client.callBuffer(args[0], ...rest);
  }

  /**
   * A call function for each server holding keys: each master of a Redis
   * Cluster, whose SCAN cursors are its own; the one server otherwise.
   */
  async eachServer() {
    if (!this.#target.cluster) return [(args) => this.call(args)];
    const client = this.#connection();
    this.#liveness.hold();
    try {
      if (client.status === 'wait') await client.connect();
      else if (client.status !== 'ready') await waitReady(client, this.#connectionOptions().connectTimeout);
      return client.nodes('master').map((node) => (args) => node.callBuffer(args[0], ...args.slice(1)).catch((error) => Promise.reject(this.#error(error))));
    } catch (error) {
      throw this.#error(error);
    } finally {
      this.#liveness.release();
    }
  }

  /**
   * Runs a command on every master of a Redis Cluster (or on the one
   * server) and resolves with the list of replies.
   */
  async callAll(args) {
    if (!this.#target.cluster) return [await this.call(args)];
    const client = this.#connection();
    this.#liveness.hold();
    try {
      if (client.status === 'wait') await client.connect();
      else if (client.status !== 'ready') await waitReady(client, this.#connectionOptions().connectTimeout);
      const name = String(args[0]).toUpperCase();
      return await Promise.all(
        client.nodes('master').map((node) => node.callBuffer(args[0], ...args.slice(1)).then((reply) => (STATUS_REPLY.has(name) ? asStatus(reply) : reply))),
      );
    } catch (error) {
      throw this.#error(error);
    } finally {
      this.#liveness.release();
    }
  }

  /**
   * A lock wait: Redis has no queue of waiters, so the waiter tries again
   * with a growing pause (at most LOCK_POLL_MAX ms) until the lease is free
   * or the wait is over.
   */
  async callBlocking(args, waitMs, signal) {
    const attempt = args.slice(0, 4);
    const deadline = Date.now() + waitMs;
    let pause = 2;
    // An aborted wait stops trying (the caller has rejected already).
    while (!(signal && signal.aborted)) {
      const fence = await this.call(attempt);
      if (fence !== null) return fence;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise((resolve) => setTimeout(resolve, Math.min(left, pause * (0.5 + Math.random()))));
      pause = Math.min(pause * 2, LOCK_POLL_MAX);
    }
    return null;
  }

  /**
   * The near cache's invalidation connection (lib/near-cache.js): a
   * connection of its own, subscribed to __redis__:invalidate, that does not
   * reconnect by itself (the near cache is dropped when it goes).
   */
  async openInvalidations(onInvalidate, onLost) {
    if (this.#target.cluster) throw shmError(CODES.UNSUPPORTED, 'the near cache is not supported on a Redis Cluster');
    const connection = this.#connection().duplicate({ lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    unrefOnConnect(connection);
    connection.on('error', () => {});
    let subscribed = false;
    connection.on('end', () => {
      if (subscribed) onLost();
    });
    connection.on('messageBuffer', (channel, payload) => onInvalidate(payload === null ? null : Array.isArray(payload) ? payload : [payload]));
    try {
      await connection.connect();
      const id = await connection.client('ID');
      await connection.subscribe(INVALIDATE_CHANNEL);
      subscribed = true;
      return { id, close: () => connection.disconnect() };
    } catch (error) {
      connection.disconnect();
      throw this.#error(error);
    }
  }

  createSubscriber(onEvent) {
    return new RedisSubscriber(this.#connection(), onEvent, this.#liveness);
  }

  /** New timeouts apply from the next call (ioredis reads them per command and per connect). */
  reset() {
    if (this.#client === null) return;
    const { connectTimeout, commandTimeout } = this.#connectionOptions();
    const options = this.#target.cluster ? this.#client.options.redisOptions : this.#client.options;
    Object.assign(options, { connectTimeout, commandTimeout });
  }

  close() {
    this.#closed = true;
    if (this.#client) this.#client.disconnect();
  }

  #error(error) {
    if (error && typeof error.code === 'string' && error.code.startsWith('ERR_')) return error;
    const message = String(error && error.message);
    if (error instanceof require('ioredis').ReplyError || isReplyText(message)) {
      const reply = message.split(' ', 1)[0];
      if (reply === 'NOAUTH' || reply === 'WRONGPASS') return shmError(CODES.AUTH, `${this.display} refused the credentials: ${message}`);
      if (reply === 'CROSSSLOT') {
        return shmError(CODES.CROSSSLOT, `${message}: in a Redis Cluster, keys used together must share a hash tag, e.g. "{user:1}:name" and "{user:1}:email"`, {
          reply,
        });
      }
      return shmError(reply === 'OOM' ? CODES.OOM : CODES.SERVER, message, { reply });
    }
    if (/timed out/i.test(message)) return shmError(CODES.TIMEOUT, `no reply from ${this.display} within ${this.#connectionOptions().commandTimeout} ms`);
    if (this.#closed) return shmError(CODES.CLOSED, 'the cluster-shm connection is closed');
    return shmError(CODES.UNREACHABLE, `cannot reach ${this.display} (${this.#lastError || message})`);
  }
}

/** ioredis reports a script's error reply as a plain Error: recognise Redis's error prefixes. */
function isReplyText(message) {
  return /^[A-Z]{2,}[A-Z_]* /.test(message) && !/^(ECONN|ETIMEDOUT|EHOST|ENOENT|EPIPE)/.test(message);
}

/** Resolves once `client` is ready; rejects if it ends first or takes longer than `ms`. */
function waitReady(client, ms) {
  return new Promise((resolve, reject) => {
    const done = (error) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      client.off('end', onEnd);
      if (error) reject(error);
      else resolve();
    };
    const onReady = () => done();
    const onEnd = () => done(new Error('the connection ended before it was ready'));
    const timer = setTimeout(() => done(new Error(`not ready within ${ms} ms`)), ms);
    client.once('ready', onReady);
    client.once('end', onEnd);
  });
}

/**
 * One subscription connection of the process. ioredis restores the
 * subscriptions when it reconnects; messages published meanwhile are lost,
 * which the listeners learn through onMissed({ reason: 'reconnected' }).
 */
class RedisSubscriber {
  #connection;

  constructor(client, onEvent) {
    const connection = client.duplicate(
      client.isCluster ? undefined : { lazyConnect: true, retryStrategy: (times) => Math.min(times * 100, 2000), maxRetriesPerRequest: null },
    );
    if (client.isCluster) connection.on('+node', (node) => unrefOnConnect(node));
    else unrefOnConnect(connection);
    connection.on('error', () => {});
    connection.on('messageBuffer', (channel, payload) => onEvent({ kind: 'message', channel, payload }));
    connection.on('pmessageBuffer', (pattern, channel, payload) => onEvent({ kind: 'pmessage', pattern, channel, payload }));
    let connected = false;
    connection.on('ready', () => {
      if (connected) onEvent({ kind: 'missed', reason: 'reconnected' });
      connected = true;
    });
    this.#connection = connection;
  }

  subscribe(kind, [name]) {
    return kind === 'pattern' ? this.#connection.psubscribe(name) : this.#connection.subscribe(name);
  }

  unsubscribe(kind, [name]) {
    return kind === 'pattern' ? this.#connection.punsubscribe(name) : this.#connection.unsubscribe(name);
  }

  close() {
    this.#connection.disconnect();
  }
}

function hasOption(args, word) {
  for (let i = 3; i < args.length; i++) if (isWord(args[i], word)) return true;
  return false;
}

function isWord(arg, word) {
  return (typeof arg === 'string' || Buffer.isBuffer(arg)) && arg.length === word.length && text(arg).toUpperCase() === word;
}

function text(arg) {
  return Buffer.isBuffer(arg) ? arg.toString('utf8') : String(arg);
}

function asStatus(reply) {
  return Buffer.isBuffer(reply) ? reply.toString('latin1') : reply;
}

module.exports = { RedisBackend, parseTarget, lockKey };

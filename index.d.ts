/// <reference types="node" />
import { EventEmitter } from 'node:events';

/**
 * cluster-shm: shared state for Node.js cluster workers.
 *
 * `require('cluster-shm')` returns the same API in the primary (served
 * in-process by the broker it hosts) and in every worker (served over the
 * broker's Unix socket). Every method returns a Promise and never throws
 * synchronously: bad arguments reject with a `TypeError` or `RangeError`,
 * failures with an `Error`; each carries a stable `code` (see `shm.codes`).
 */

declare namespace shm {
  /** A value as stored: JSON types, Buffers, and with `serialization: 'advanced'` anything structured clone keeps. */
  type Value = unknown;

  type Serialization = 'json' | 'advanced';

  interface Options {
    /**
     * How values that are not plain JSON are handled. `'json'` (default) stores
     * what `JSON.stringify` keeps and rejects what it would change (Map, Set,
     * BigInt, NaN, typed arrays, cycles). `'advanced'` stores those too, like
     * structured clone (Node's name for it in `child_process` and `cluster`).
     */
    serialization?: Serialization;
    /** Milliseconds a call waits for a connection to the broker. Default 5000. */
    connectTimeout?: number;
    /** Milliseconds a call waits for its reply. Default 10000. */
    commandTimeout?: number;
    /** Largest encoded value accepted, in bytes. Default 64 MiB. */
    maxValueBytes?: number;
    /** Largest key, lock name or channel, in UTF-8 bytes. Default 64 KiB. */
    maxKeyBytes?: number;
    /**
     * Broker memory bound in bytes (keys, values and bookkeeping); 0 for none.
     * Set in the primary before forking; workers see it in `options`.
     */
    maxMemory?: number;
    /** Broker bound on the number of keys; 0 for none. Primary only. */
    maxKeys?: number;
    /**
     * What happens at a bound: evict least recently used keys
     * (`'allkeys-lru'`, the default once a bound is set), evict the keys
     * closest to expiring (`'volatile-ttl'`), or refuse writes with
     * ERR_SHM_OOM (`'noeviction'`). Primary only.
     */
    evictionPolicy?: 'noeviction' | 'allkeys-lru' | 'volatile-ttl';
    /**
     * A snapshot file, loaded when set and written atomically when the
     * broker stops (normally or on SIGINT/SIGTERM/SIGHUP). Primary only.
     */
    persist?: string | null;
    /**
     * On the Redis backend, the lease of a lock in ms: the holder renews it
     * every third of it while its process lives (up to the lock's ttl), so a
     * holder that dies keeps the lock at most this long. The embedded
     * broker frees a dead holder's lock at once. Default 10000.
     */
    lockLease?: number;
    /**
     * How long a `getOrSet()` fetcher may run, in ms, before its flight is
     * abandoned: that call rejects with ERR_SHM_FETCH_TIMEOUT and the next
     * caller fetches. Default 20000 (below getOrSet's default wait of 30000).
     */
    fetchTimeout?: number;
    /**
     * On Redis: keep values this process reads in memory, kept coherent by
     * invalidations the server pushes: `true` for the defaults, or
     * `{ maxKeys, ttl }` (defaults 10000 keys, 60000 ms). Off by default.
     * Workers inherit it from the primary. A process always reads its own
     * writes; another process's write is seen once its invalidation
     * arrives. Ignored, with an ERR_SHM_IGNORED_OPTION warning, on
     * cluster-shm's broker, whose workers read the store in their own memory.
     */
    nearCache?: boolean | NearCacheOptions;
    /**
     * Put in front of every key and lock name this handle stores; its
     * keys(), scan(), size() and clear() see only the keys behind it.
     * Default ''. Workers inherit it from the primary. See `namespace()`.
     */
    keyPrefix?: string;
  }

  interface ScanOptions {
    /** How many keys the store looks at per step (SCAN's COUNT hint). Default 100. */
    count?: number;
  }

  interface NamespaceOptions {
    /** Put between the name and the key. Default ':'. */
    separator?: string;
  }

  interface NearCacheOptions {
    /** Most keys kept; the least recently used go first. Default 10000. */
    maxKeys?: number;
    /** Longest a value is kept, in ms, invalidations aside. Default 60000. */
    ttl?: number;
  }

  /** Where `connect()` goes: a standalone broker, a Redis/Valkey server, or a Redis Cluster. */
  type ConnectTarget =
    | { socket: string; /** The broker's secret; default CLUSTER_SHM_AUTH when `socket` is CLUSTER_SHM_SOCKET, else none. */ auth?: string; url?: never; cluster?: never }
    | {
        socket?: never;
        cluster?: never;
        /**
         * `redis://[user:pass@]host:port/db`, `rediss://…` (TLS),
         * `redis+unix:///path/to/redis.sock?db=N&password=…`,
         * `redis+cluster://host:port,host:port` or `rediss+cluster://…`.
         */
        url: string;
      }
    | {
        /** Seed nodes of a Redis Cluster. */
        cluster: Array<{ host: string; port: number }>;
        socket?: never;
        url?: never;
        /** Options for every node connection (ioredis RedisOptions: password, tls, ...). */
        redisOptions?: Record<string, unknown>;
      };

  interface UpdateOptions {
    /** How many times `fn` runs again after a conflicting change. Default 1000. */
    retries?: number;
    /** A ttl for the written value; without it the key keeps its ttl. */
    ttl?: number;
  }

  interface GetOrSetOptions {
    /** Time to live of the fetched value, in ms. */
    ttl?: number;
    /** Longest wait for another process's fetch, in ms. Default 30000. */
    timeout?: number;
    /** Longest run of this call's fetcher before the flight is abandoned, in ms. Default: the `fetchTimeout` option. */
    fetchTimeout?: number;
    /**
     * Cancels the wait: aborting rejects the call with an AbortError (code
     * ABORT_ERR) and the flight's lock wait is withdrawn once every caller
     * of this process waiting on it has aborted.
     */
    signal?: AbortSignal;
  }

  interface LockOptions {
    /** How long the lock lasts unless released or extended, in ms. Default 30000. */
    ttl?: number;
    /**
     * Longest wait for the lock, in ms; 0 only tries. Default 10000. The
     * broker serves waiters in arrival order; on Redis they retry (every
     * 50 ms at most), in no set order.
     */
    timeout?: number;
    /**
     * Cancels the wait: aborting rejects the call with an AbortError (code
     * ABORT_ERR) and withdraws it from the broker's queue.
     */
    signal?: AbortSignal;
  }

  interface SubscribeOptions {
    /**
     * Treat `channel` as a glob pattern. By default it is one when it holds
     * `*`, `?` or `[`.
     */
    pattern?: boolean;
    /**
     * Called when messages may have been lost: the connection was lost and
     * made again (`reason: 'reconnected'`; on Redis also after the server
     * cut this subscriber off for falling behind), or messages were dropped
     * because this process fell behind (`reason: 'overflow'`).
     * Subscriptions are restored by themselves.
     */
    onMissed?: (info: { reason: 'reconnected' | 'overflow' }) => void;
    /**
     * Ends the subscription: aborted before it is in place, the call rejects
     * with an AbortError; aborted later, it unsubscribes.
     */
    signal?: AbortSignal;
  }

  interface KeyEvent {
    key: string;
    /** 'set', 'del', 'expire', 'expired', 'evicted', 'incrby', 'incrbyfloat', 'persist', ... */
    event: string;
  }

  /** Resolves once the listener is removed (and the broker subscription, if it was the last). */
  type Unsubscribe = () => Promise<void>;

  interface RateLimitOptions {
    /** Calls allowed per window. */
    points: number;
    /** The window, in ms. */
    duration: number;
    /** Count the previous window in proportion to its overlap. Default false. */
    sliding?: boolean;
  }

  interface RateLimitResult {
    allowed: boolean;
    remaining: number;
    /** Ms until a refused caller may try again, or until the window ends. */
    resetMs: number;
  }

  /** A held lock; `await using lock = await shm.lock('x')` releases it at the end of the scope. */
  interface Lock extends AsyncDisposable {
    readonly name: string;
    /** Strictly increasing across grants of any lock: a fencing token. */
    readonly fence: number;
    /** Releases the lock; false when it was no longer held by this handle. */
    release(): Promise<boolean>;
    /** Sets the lock's ttl to `ttl` ms from now; false when no longer held. */
    extend(ttl: number): Promise<boolean>;
    /** Releases the lock (see `await using`). */
    [Symbol.asyncDispose](): Promise<void>;
  }

  interface SetOptions {
    /** Time to live in milliseconds (positive, at most 2^53 - 1). */
    ttl?: number;
  }

  interface Stats {
    keys: number;
    keysWithTtl: number;
    /** Bytes held by keys, values and their bookkeeping. */
    usedMemory: number;
    peakMemory: number;
    /**
     * Resident memory of the broker's process (INFO `used_memory_rss`): on
     * Linux with every page of the shared store counted once, whichever
     * process touched it; on macOS the process's own resident size; 0 where
     * the system tells neither.
     */
    residentMemory: number;
    /**
     * `residentMemory / usedMemory`, as INFO's `mem_fragmentation_ratio`: the
     * process's own memory counts too, so a small store shows a high ratio
     * (0 while the broker's store is empty).
     */
    fragmentationRatio: number;
    maxMemory: number;
    /** null on Redis, which bounds memory only. */
    maxKeys: number | null;
    evictionPolicy: 'noeviction' | 'allkeys-lru' | 'volatile-ttl';
    /** Locks held; null on Redis, which keeps no count. */
    locksHeld: number | null;
    /** Callers waiting in line for a lock; null on Redis, where waiters poll. */
    lockWaiters: number | null;
    /** Replies and messages queued for clients and not yet read by them; null on Redis. */
    outputBufferBytes: number | null;
    expiredKeys: number;
    evictedKeys: number;
    keyspaceHits: number;
    keyspaceMisses: number;
    connectedClients: number;
    totalCommands: number;
    uptimeSeconds: number;
    version: string;
    /** This process's near cache, or null without one. */
    nearCache: { keys: number; hits: number; misses: number } | null;
  }

  type Entries = Record<string, Value> | Map<string, Value> | Array<[string, Value]>;

  /** Error codes carried by `err.code`. */
  /** An error cluster-shm raised. */
  interface ShmError extends Error {
    readonly code: Codes[keyof Codes];
    /** For ERR_SHM_SERVER: the error prefix of the reply (ERR, WRONGTYPE, ...). */
    readonly reply?: string;
  }

  interface ShmErrorConstructor {
    new (message: string, code: string): ShmError;
    readonly prototype: ShmError;
  }

  interface Codes {
    /** No broker answered within `connectTimeout`. */
    readonly UNREACHABLE: 'ERR_SHM_UNREACHABLE';
    /** This process ran out of a system resource (open files, memory) connecting to the broker. */
    readonly NO_RESOURCES: 'ERR_SHM_NO_RESOURCES';
    /** A sent command got no reply within `commandTimeout`. */
    readonly TIMEOUT: 'ERR_SHM_TIMEOUT';
    /** The broker answered with an error; `err.reply` holds its prefix (ERR, WRONGTYPE, ...). */
    readonly SERVER: 'ERR_SHM_SERVER';
    /** `close()` was called. */
    readonly CLOSED: 'ERR_SHM_CLOSED';
    /** The broker refused this process: no secret, or a wrong one, in CLUSTER_SHM_AUTH. */
    readonly AUTH: 'ERR_SHM_AUTH';
    /** The broker socket's directory is within another user's reach: nothing was sent there. */
    readonly UNSAFE_SOCKET: 'ERR_SHM_UNSAFE_SOCKET';
    /** A cluster worker whose primary never loaded cluster-shm. */
    readonly NO_BROKER: 'ERR_SHM_NO_BROKER';
    /** The primary could not start its broker. */
    readonly BROKER_START: 'ERR_SHM_BROKER_START';
    /** An encoded value over `maxValueBytes` (a RangeError). */
    readonly VALUE_TOO_LARGE: 'ERR_SHM_VALUE_TOO_LARGE';
    /** A key, lock name or channel over `maxKeyBytes` (a RangeError). */
    readonly KEY_TOO_LARGE: 'ERR_SHM_KEY_TOO_LARGE';
    /** A glob pattern (`keys`, `subscribe`, `watch`) over 1024 bytes (a RangeError). */
    readonly PATTERN_TOO_LARGE: 'ERR_SHM_PATTERN_TOO_LARGE';
    /** A value nested too deeply (thousands of levels) to encode (a RangeError). */
    readonly VALUE_TOO_DEEP: 'ERR_SHM_VALUE_TOO_DEEP';
    /** The `persist` snapshot could not be read, or the final one written. */
    readonly SNAPSHOT: 'ERR_SHM_SNAPSHOT';
    /** The native layer refused an argument (a bug if you see it). */
    readonly BAD_ARGUMENT: 'ERR_SHM_BAD_ARGUMENT';
    /** An argument of the wrong type (a TypeError). */
    readonly INVALID_ARG_TYPE: 'ERR_INVALID_ARG_TYPE';
    /** A value that cannot be stored without changing it (a TypeError). */
    readonly INVALID_ARG_VALUE: 'ERR_INVALID_ARG_VALUE';
    /** An option name that does not exist (a TypeError). */
    readonly UNKNOWN_OPTION: 'ERR_SHM_UNKNOWN_OPTION';
    /** A number out of its range, such as a negative ttl or an `incr` result past 2^53 - 1 (a RangeError). */
    readonly OUT_OF_RANGE: 'ERR_OUT_OF_RANGE';
    /** A write refused at the memory bound under `evictionPolicy: 'noeviction'`. */
    readonly OOM: 'ERR_SHM_OOM';
    /** `lock()` did not get the lock within its timeout. */
    readonly LOCK_TIMEOUT: 'ERR_SHM_LOCK_TIMEOUT';
    /** `update()` ran out of retries because the value kept changing. */
    readonly CONFLICT: 'ERR_SHM_CONFLICT';
    /** A `getOrSet()` fetch in another process failed with an error that had no code. */
    readonly FETCH_FAILED: 'ERR_SHM_FETCH_FAILED';
    /** A `getOrSet()` fetcher did not settle within `fetchTimeout`: its flight was abandoned. */
    readonly FETCH_TIMEOUT: 'ERR_SHM_FETCH_TIMEOUT';
    /** Redis Cluster: keys of one call hash to different slots; give them a common hash tag. */
    readonly CROSSSLOT: 'ERR_SHM_CROSSSLOT';
    /** Not available on this backend (`watch()` on a Redis Cluster). */
    readonly UNSUPPORTED: 'ERR_SHM_UNSUPPORTED';
    /** The code of the process warning given when a Redis server refuses to turn on key events. */
    readonly KEY_EVENTS_OFF: 'ERR_SHM_KEY_EVENTS_OFF';
    /** Thrown by `require('cluster-shm')`: the platform package is missing or could not be loaded. */
    readonly NATIVE_LOAD: 'ERR_SHM_NATIVE_LOAD';
    /** Thrown by `require('cluster-shm')`: no prebuilt binary for this platform. */
    readonly UNSUPPORTED_PLATFORM: 'ERR_SHM_UNSUPPORTED_PLATFORM';
    /** `cluster-shm/prometheus` without prom-client installed. */
    readonly MISSING_PEER: 'ERR_SHM_MISSING_PEER';
    /** A wait cancelled through its AbortSignal (an AbortError, Node's own code). */
    readonly ABORTED: 'ABORT_ERR';
    /** The code of the warning given when broker-only options are ignored on Redis. */
    readonly IGNORED_OPTION: 'ERR_SHM_IGNORED_OPTION';
    /** The code of the warning given when the runtime directory cannot list a broker. */
    readonly UNSAFE_DIR: 'ERR_SHM_UNSAFE_DIR';
  }

  /** What a handle emits. */
  interface Events {
    /**
     * The connection to the store was lost or could not be made. Emitted
     * only while someone listens: the calls it concerns reject anyway.
     */
    error: [error: ShmError];
    /** A new connection was made after one was lost. */
    reconnect: [];
  }

  interface SharedMemory extends EventEmitter {
    on<E extends keyof Events>(event: E, listener: (...args: Events[E]) => void): this;
    once<E extends keyof Events>(event: E, listener: (...args: Events[E]) => void): this;
    off<E extends keyof Events>(event: E, listener: (...args: Events[E]) => void): this;
    /** 'primary' hosts the broker; 'worker' is a cluster worker; 'client' any other process using a broker. */
    readonly role: 'primary' | 'worker' | 'client';
    /** The broker's socket path (for `redis-cli -s`), if there is one. */
    readonly socket: string | undefined;
    /** The options in force in this process. */
    readonly options: Required<Options>;
    readonly codes: Codes;

    /**
     * Changes options for this process. In the primary, workers forked
     * afterwards inherit them. Throws a TypeError for unknown options.
     */
    configure(options: Options): this;

    /** The value of `key`, or `undefined` when it does not exist. */
    get<T = Value>(key: string): Promise<T | undefined>;
    /** Stores `value` under `key`, optionally with a time to live. */
    set(key: string, value: Value, options?: SetOptions): Promise<void>;
    /** Whether `key` exists. */
    has(key: string): Promise<boolean>;
    /** Deletes `key`; true when it existed. */
    delete(key: string): Promise<boolean>;
    /**
     * Keys matching a Redis glob pattern (`*`, `?`, `[a-z]`; at most 1024
     * bytes). Default `'*'`. On Redis the keys come from a SCAN walk, never
     * KEYS.
     */
    keys(pattern?: string): Promise<string[]>;
    /**
     * Walks the keys matching the pattern a batch at a time without holding
     * up the store: `for await (const key of shm.scan('user:*')) ...`. Keys
     * present for the whole walk are yielded; on Redis one may come twice.
     */
    scan(pattern?: string, options?: ScanOptions): AsyncGenerator<string, void, undefined>;
    /** Number of keys (of this namespace, when the handle has a keyPrefix). */
    size(): Promise<number>;
    /**
     * Deletes every key (of this namespace, when the handle has a
     * keyPrefix). On Redis it deletes what SCAN finds, never FLUSHDB.
     */
    clear(): Promise<void>;
    /**
     * A handle whose keys and lock names live behind `name` + separator
     * (default ':'); its keys(), scan(), size() and clear() cover only them.
     * Channels are not prefixed. It shares this handle's connections and
     * options: its configure() throws, its close() does nothing.
     */
    namespace(name: string, options?: NamespaceOptions): SharedMemory;
    /** Values of several keys, `undefined` for missing ones, read atomically. */
    mget<T = Value>(keys: string[]): Promise<Array<T | undefined>>;
    /** Stores several keys atomically. */
    mset(entries: Entries): Promise<void>;
    /**
     * Adds `by` (default 1) to the number at `key` atomically and resolves
     * with the result; a missing key counts as 0 and the key keeps its ttl.
     * An integer `by` needs an integer value (Redis INCRBY); a fractional
     * one works on any number (INCRBYFLOAT). An integer result past
     * ±(2^53 - 1), where a number cannot hold every integer, is refused
     * with a RangeError (`ERR_OUT_OF_RANGE`), the key left unchanged.
     */
    incr(key: string, by?: number): Promise<number>;
    /** `incr(key, -by)`. */
    decr(key: string, by?: number): Promise<number>;
    /** Stores the value only if `key` does not exist; true when stored. */
    setIfAbsent(key: string, value: Value, options?: SetOptions): Promise<boolean>;
    /** Stores the value and resolves with the one it replaced. */
    getAndSet<T = Value>(key: string, value: Value, options?: SetOptions): Promise<T | undefined>;
    /** Deletes `key` and resolves with the value it held. */
    getAndDelete<T = Value>(key: string): Promise<T | undefined>;
    /**
     * Replaces the value with `next` only if it equals `expected` (compared
     * by stored encoding; `undefined` means "the key does not exist").
     * The key keeps its ttl unless `ttl` is given. True when replaced.
     */
    compareAndSet(key: string, expected: Value | undefined, next: Value, options?: SetOptions): Promise<boolean>;
    /**
     * Atomic read-modify-write: writes `fn(current)` only if nobody changed
     * the value meanwhile, running `fn` again on conflict. Returning
     * `undefined` deletes the key. Resolves with the value written.
     */
    update<T = Value>(key: string, fn: (current: T | undefined) => T | undefined | Promise<T | undefined>, options?: UpdateOptions): Promise<T | undefined>;
    /**
     * The value of `key`; when missing, one caller across all processes runs
     * `fetcher` and stores its result, and every caller waiting meanwhile
     * gets that result or its error.
     */
    getOrSet<T = Value>(key: string, fetcher: () => T | Promise<T>, options?: GetOrSetOptions): Promise<T>;
    /**
     * Acquires a named lock, waiting first come first served. Released on
     * `release()`, when its ttl passes, or at once when this process exits.
     */
    lock(name: string, options?: LockOptions): Promise<Lock>;
    /** Runs `fn` holding the named lock and always releases it. */
    withLock<R>(name: string, fn: (lock: Lock) => R | Promise<R>, options?: LockOptions): Promise<R>;
    /**
     * Publishes `message` (any value `set` accepts, type kept) to every
     * subscriber in every process; resolves with how many received it.
     */
    publish(channel: string, message: Value): Promise<number>;
    /**
     * Calls `listener(message, channel)` for messages on `channel` (or on
     * channels matching it, when it is a pattern). Resolves, once the
     * broker delivers to it, with a function that unsubscribes.
     * Subscriptions use a connection of their own and do not keep the
     * process alive.
     */
    subscribe<T = Value>(channel: string, listener: (message: T, channel: string) => void, options?: SubscribeOptions): Promise<Unsubscribe>;
    /**
     * Calls `listener({ key, event })` when a key matching `keyOrPattern`
     * changes in any process (Redis keyspace notifications, turned on by the
     * first watcher). A glob makes it a pattern unless `pattern: false`.
     */
    watch(keyOrPattern: string, listener: (event: KeyEvent) => void, options?: SubscribeOptions): Promise<Unsubscribe>;
    /** Takes a point from `key`'s rate limit budget, atomically across processes. */
    rateLimit(key: string, options: RateLimitOptions): Promise<RateLimitResult>;
    /** Sets the time to live of `key` in milliseconds; false when it does not exist. */
    expire(key: string, ttl: number): Promise<boolean>;
    /** Milliseconds left to live: `Infinity` without expiry, `undefined` for a missing key. */
    ttl(key: string): Promise<number | undefined>;
    /** Removes the expiry of `key`; false when it had none. */
    persist(key: string): Promise<boolean>;
    /** Statistics of the store and the broker. */
    stats(): Promise<Stats>;
    /** Sends a raw broker command; resolves with the raw reply (Buffers for bulk strings). */
    command(name: string, ...args: Array<string | number | Uint8Array>): Promise<unknown>;
    /** Closes this process's connection; in the primary, stops the broker. */
    close(): Promise<void>;
  }
}

declare const shm: shm.SharedMemory & {
  readonly default: shm.SharedMemory;
  /**
   * The class of every error cluster-shm raises: `err instanceof ShmError`
   * holds for all of them, argument errors included, which are also
   * `TypeError` or `RangeError` instances. `err.code` tells them apart.
   */
  readonly ShmError: shm.ShmErrorConstructor;
  /**
   * A separate handle on another store, with its own options: a standalone
   * broker, a Redis/Valkey server or a Redis Cluster. Throws a TypeError for
   * a malformed target; connection failures reject its calls.
   */
  connect(target: shm.ConnectTarget, options?: shm.Options): shm.SharedMemory;
};

export = shm;

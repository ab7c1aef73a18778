/// <reference types="node" />

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
  }

  interface SetOptions {
    /** Time to live in milliseconds (positive, finite). */
    ttl?: number;
  }

  interface Stats {
    keys: number;
    keysWithTtl: number;
    /** Bytes held by keys, values and their bookkeeping. */
    usedMemory: number;
    peakMemory: number;
    /** Resident memory of the broker's process. */
    residentMemory: number;
    expiredKeys: number;
    evictedKeys: number;
    keyspaceHits: number;
    keyspaceMisses: number;
    connectedClients: number;
    totalCommands: number;
    uptimeSeconds: number;
    version: string;
  }

  type Entries = Record<string, Value> | Map<string, Value> | Array<[string, Value]>;

  /** Error codes carried by `err.code`. */
  interface Codes {
    /** No broker answered within `connectTimeout`. */
    readonly UNREACHABLE: 'ERR_SHM_UNREACHABLE';
    /** A sent command got no reply within `commandTimeout`. */
    readonly TIMEOUT: 'ERR_SHM_TIMEOUT';
    /** The broker answered with an error; `err.reply` holds its prefix (ERR, WRONGTYPE, ...). */
    readonly SERVER: 'ERR_SHM_SERVER';
    /** `close()` was called. */
    readonly CLOSED: 'ERR_SHM_CLOSED';
    /** A cluster worker whose primary never loaded cluster-shm. */
    readonly NO_BROKER: 'ERR_SHM_NO_BROKER';
    /** The primary could not start its broker. */
    readonly BROKER_START: 'ERR_SHM_BROKER_START';
    /** An encoded value over `maxValueBytes` (a RangeError). */
    readonly VALUE_TOO_LARGE: 'ERR_SHM_VALUE_TOO_LARGE';
    /** The native layer refused an argument (a bug if you see it). */
    readonly BAD_ARGUMENT: 'ERR_SHM_BAD_ARGUMENT';
    /** An argument of the wrong type (a TypeError). */
    readonly INVALID_ARG_TYPE: 'ERR_INVALID_ARG_TYPE';
    /** A value that cannot be stored without changing it (a TypeError). */
    readonly INVALID_ARG_VALUE: 'ERR_INVALID_ARG_VALUE';
    /** An option name that does not exist (a TypeError). */
    readonly UNKNOWN_OPTION: 'ERR_SHM_UNKNOWN_OPTION';
    /** A number out of its range, such as a negative ttl (a RangeError). */
    readonly OUT_OF_RANGE: 'ERR_OUT_OF_RANGE';
  }

  interface SharedMemory {
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
    /** Keys matching a Redis glob pattern (`*`, `?`, `[a-z]`). Default `'*'`. */
    keys(pattern?: string): Promise<string[]>;
    /** Number of keys. */
    size(): Promise<number>;
    /** Deletes every key. */
    clear(): Promise<void>;
    /** Values of several keys, `undefined` for missing ones, read atomically. */
    mget<T = Value>(keys: string[]): Promise<Array<T | undefined>>;
    /** Stores several keys atomically. */
    mset(entries: Entries): Promise<void>;
    /**
     * Adds `by` (default 1) to the number at `key` atomically and resolves
     * with the result; a missing key counts as 0 and the key keeps its ttl.
     * An integer `by` needs an integer value (Redis INCRBY); a fractional
     * one works on any number (INCRBYFLOAT).
     */
    incr(key: string, by?: number): Promise<number>;
    /** `incr(key, -by)`. */
    decr(key: string, by?: number): Promise<number>;
    /** Sets the time to live of `key` in milliseconds; false when it does not exist. */
    expire(key: string, ttl: number): Promise<boolean>;
    /** Milliseconds left to live: `Infinity` without expiry, `undefined` for a missing key. */
    ttl(key: string): Promise<number | undefined>;
    /** Removes the expiry of `key`; false when it had none. */
    persist(key: string): Promise<boolean>;
    /** Statistics of the store and the broker. */
    stats(): Promise<Stats>;
    /** Sends a raw broker command; resolves with the raw reply (Buffers for bulk strings). */
    command(name: string, ...args: Array<string | number | Buffer>): Promise<unknown>;
    /** Closes this process's connection; in the primary, stops the broker. */
    close(): Promise<void>;
  }
}

declare const shm: shm.SharedMemory & { readonly default: shm.SharedMemory };

export = shm;

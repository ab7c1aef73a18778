/// <reference types="node" />
import { EventEmitter } from 'node:events';
import shm = require('./index');

declare namespace KeyvClusterShm {
  interface Options {
    /** The cluster-shm instance to store in. Default: `require('cluster-shm')`. */
    shm?: shm.SharedMemory;
    /**
     * The adapter's namespace in the store: put in front of every key it
     * stores (after it, Keyv's `namespace:`). Default 'keyv:'; '' for none.
     */
    prefix?: string;
  }

  interface Entry {
    key: string;
    value: unknown;
    /** Milliseconds to live. */
    ttl?: number;
  }
}

/**
 * `require('cluster-shm/keyv')`: a Keyv storage adapter, so every cluster
 * worker shares one Keyv store: `new Keyv({ store: new KeyvClusterShm() })`.
 *
 * Keys are stored as `prefix + key` (Keyv 5 has put `namespace:` in front of
 * the key already); values as Keyv hands them over; a ttl is the key's ttl
 * in the broker. Methods reject on a cluster-shm error (Keyv then emits it).
 */
declare class KeyvClusterShm extends EventEmitter {
  constructor(options?: KeyvClusterShm.Options);
  static readonly default: typeof KeyvClusterShm;
  static readonly KeyvClusterShm: typeof KeyvClusterShm;

  readonly shm: shm.SharedMemory;
  /** The namespace handle the adapter stores through (`shm` itself with prefix ''). */
  readonly store: shm.SharedMemory;
  readonly prefix: string;
  /** Read by Keyv: `dialect: 'redis'` lets Keyv 5 offer `keyv.iterator()`. */
  opts: { dialect: 'redis'; prefix: string; [option: string]: unknown };
  /** Set by Keyv 5 to its namespace; `clear()` and `iterator()` keep to it. */
  namespace?: string;

  /** The stored value, or `undefined`. */
  get<Value = unknown>(key: string): Promise<Value | undefined>;
  /** Values in order, `undefined` for missing keys, in one atomic read. */
  getMany<Value = unknown>(keys: string[]): Promise<Array<Value | undefined>>;
  /** Stores the value; `ttl` in ms (none or 0: no expiry; negative: deletes the key). */
  set(key: string, value: unknown, ttl?: number): Promise<boolean>;
  /**
   * Stores several entries; resolves with `true` for each (typed `any`
   * because Keyv 5 declares this method `Promise<void>` but passes the
   * result on from `keyv.setMany()`).
   */
  setMany(entries: KeyvClusterShm.Entry[]): Promise<any>;
  has(key: string): Promise<boolean>;
  hasMany(keys: string[]): Promise<boolean[]>;
  /** True when the key existed. */
  delete(key: string): Promise<boolean>;
  /** True when every key existed. */
  deleteMany(keys: string[]): Promise<boolean>;
  /**
   * Deletes the keys of the Keyv namespace in use, or without one, the
   * adapter's own; only with `prefix: ''` and no namespace, every key of the store.
   */
  clear(): Promise<void>;
  /** `[key, value]` for each key of `namespace` (or of the prefix), keys without the prefix. */
  iterator<Value = unknown>(namespace?: string): AsyncGenerator<[string, Value], void, unknown>;
  /** Does nothing: the process's cluster-shm connection is not the adapter's to close. */
  disconnect(): Promise<void>;
}

export = KeyvClusterShm;

/// <reference types="node" />
import shm = require('./index');

interface ShmStoreOptions {
  /** The sessions' namespace: put in front of every session id. Default 'sess:'. */
  prefix?: string;
  /** Ms a session lives when its cookie has no expiry. Default one day. */
  ttl?: number | ((session: object) => number);
  /** Any cluster-shm handle (the module itself, one from `connect()`, a namespace); default the module's own. */
  client?: shm.SharedMemory;
}

/**
 * `require('cluster-shm/session')(session)`: a store class for
 * express-session, of express-session's own `Store` type.
 */
declare function clusterShmSession<S extends abstract new (...args: any[]) => any>(session: {
  Store: S;
}): new (options?: ShmStoreOptions) => InstanceType<S>;

export = clusterShmSession;

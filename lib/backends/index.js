'use strict';

/**
 * Where a handle's commands run. The handle (SharedMemory, lib/api.js)
 * checks arguments and encodes values once, then hands RESP commands to one
 * backend:
 *
 * - `InProcessBackend` (in-process.js): the broker runs in this process
 *   (a cluster primary, `cluster-shm serve`);
 * - `BrokerClientBackend` (broker.js): a broker another process hosts
 *   (cluster workers, `connect({ socket })`), its store mapped here;
 * - `RedisBackend` (redis.js): a Redis or Valkey server, or a Redis Cluster;
 * - `FailedBackend` (failed.js): no store could be reached; every call
 *   fails with the reason.
 *
 * The handle asks a backend what it can do through `capabilities` only,
 * never by looking for a method.
 *
 * @typedef {object} Capabilities
 * @property {boolean} hostsBroker The broker runs in this process: the broker
 *   options (maxMemory, maxKeys, evictionPolicy, persist) are applied here,
 *   and `persist()` exists.
 * @property {boolean} ownsServer The store belongs to this app: keys() may
 *   ask for every key at once and clear() may flush it. False (Redis, which
 *   may be shared and blocks on KEYS): both walk with SCAN, and broker
 *   options given to configure() are ignored with a warning.
 * @property {boolean} leaseLocks A lock is a lease its holder renews every
 *   `lockLease` ms (Redis), not a grant that ends with the holder's
 *   connection (the broker).
 * @property {boolean} cluster Keys live on several servers (a Redis
 *   Cluster): commands over the whole keyspace go through `callAll()` and
 *   `eachServer()`, and key events cannot be watched.
 * @property {boolean} nearCache A near cache may sit in front of `call()`
 *   (lib/near-cache.js): `openInvalidations()` and `generation` exist.
 * @property {boolean} mappedStore Data commands run in this process, on the
 *   broker's store (mapped here, when it could be, or the store of the
 *   broker this process hosts): `readLocal()` and `writeLocal()` exist, and
 *   `call()` takes a value given in parts (an array of Buffers, joined in
 *   the copy the store makes anyway).
 *
 * @typedef {object} Subscriber One pub/sub connection of the process (lib/pubsub.js multiplexes listeners over it).
 * @property {(kind: 'channel' | 'pattern', names: string[]) => Promise<void>} subscribe
 *   Resolves once the server delivers to it.
 * @property {(kind: 'channel' | 'pattern', names: string[]) => Promise<void>} unsubscribe
 * @property {() => void} close Stops delivery at once.
 *
 * @typedef {object} Backend
 * @property {Capabilities} capabilities What the handle may rely on (above).
 * @property {(name: 'error' | 'reconnect', detail: any) => void} onEvent
 *   Set by the handle: the backend reports a lost or refused connection
 *   ('error', with the ShmError) and a new connection after a loss
 *   ('reconnect'), and the handle emits them.
 * @property {number} db The database number whose keyspace events watch()
 *   subscribes to and whose INFO line stats() reads (0 but on Redis).
 * @property {(args: Array<string | Buffer>) => any} call Runs one command;
 *   returns its reply or a Promise of it (RESP2 replies: Buffers for bulk
 *   strings, 'OK'-like strings for status replies, numbers, arrays, null),
 *   and rejects (or throws) an ShmError.
 * @property {(args: Array<string | Buffer>) => any} callForText `call()` for
 *   a command whose bulk strings are wanted as strings (KEYS); only where
 *   `ownsServer`.
 * @property {(args: Array<string | Buffer>, waitMs: number, signal?: AbortSignal) => Promise<number | null>} callBlocking
 *   A lock wait (`SHM.LOCK name token ttl WAIT ms`): resolves with the
 *   fencing token, or null when the wait ran out; an aborted `signal` stops
 *   it where the backend can.
 * @property {(onEvent: (event: object) => void) => Subscriber} createSubscriber
 *   The process's pub/sub connection. `onEvent` hears `{ kind: 'message',
 *   channel, payload }`, `{ kind: 'pmessage', pattern, channel, payload }`
 *   (Buffers) and `{ kind: 'missed', reason }` when messages may have been
 *   lost ('reconnected', 'overflow').
 * @property {() => void} reset The connection options (timeouts) changed:
 *   they apply from the next call on.
 * @property {() => void} close Closes this process's connections (or, where
 *   `hostsBroker`, the broker); may throw when the broker's final snapshot
 *   could not be written.
 * @property {(path: string) => void} [persist] Where `hostsBroker`: loads the
 *   snapshot at `path` and saves there when the broker closes.
 * @property {(args: Array<string | Buffer>) => Promise<any[]>} [callAll]
 *   Where `cluster`: runs a command on every master, resolving with their
 *   replies in a list.
 * @property {() => Promise<Array<(args: Array<string | Buffer>) => Promise<any>>>} [eachServer]
 *   Where `cluster`: a call function per master (each has its own SCAN
 *   cursors).
 * @property {(onInvalidate: (keys: Buffer[] | null) => void, onLost: () => void) => Promise<{ id: number, close(): void }>} [openInvalidations]
 *   Where `nearCache`: a connection subscribed to the server's key
 *   invalidations (null for a flush), and its client id for `CLIENT
 *   TRACKING … REDIRECT`.
 * @property {(key: string, decode: (bytes: Buffer | null, length: number, owned: boolean) => any) => any} [readLocal]
 *   Where `mappedStore`: GET run in this process, synchronously, returning
 *   `decode(bytes, length, owned)` of the value, which is the first `length`
 *   bytes of `bytes` (null for a missing key), or `NOT_LOCAL` when the
 *   broker must run it. `owned`: `bytes` is a Buffer of the value's own,
 *   which decode may keep; otherwise it is a buffer the next read reuses.
 * @property {(key: string, value: string | Buffer | Buffer[]) => any} [writeLocal]
 *   Where `mappedStore`: `SET key value` run in this process, synchronously,
 *   returning its reply, or `NOT_LOCAL` when the broker must run it.
 * @property {number} [generation] Where `nearCache`: changes whenever calls
 *   start going over a new connection (tracking is per connection).
 */

const { InProcessBackend } = require('./in-process');
const { BrokerClientBackend } = require('./broker');
const { NOT_LOCAL } = require('../local-store');
const { RedisBackend } = require('./redis');
const { FailedBackend } = require('./failed');

module.exports = { InProcessBackend, BrokerClientBackend, RedisBackend, FailedBackend, NOT_LOCAL };

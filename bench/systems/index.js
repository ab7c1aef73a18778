'use strict';

/**
 * The systems under test. Each entry names the module that sets it up in the
 * primary and in a worker; `inProcess` runs the load in the primary itself;
 * `workloads` lists the workloads it runs in the default matrix (every
 * system can run every workload: `--only` picks systems explicitly).
 * Only metadata here, so the orchestrator can list systems without loading
 * any of them (loading cluster-shm in the orchestrator would start a broker).
 */

const ALL = ['json', 'buffer'];

const SYSTEMS = [
  {
    id: 'cluster-shm',
    label: 'cluster-shm (workers, store mapped in)',
    file: './cluster-shm.js',
    how: "`require('cluster-shm')` in the primary (starts the broker) and in each worker; each worker maps the broker's store and runs `shm.get` / `shm.set` on it in its own process, with no round trip",
    workloads: [...ALL, 'read'],
  },
  {
    id: 'cluster-shm-socket',
    label: 'cluster-shm (workers → broker socket)',
    file: './cluster-shm.js',
    localStore: false,
    how: 'as cluster-shm, with `CLUSTER_SHM_LOCAL_STORE=0` in the workers: every call goes over the broker\'s socket, as before workers mapped the store',
    workloads: ['json'],
  },
  {
    id: 'cluster-shm-inprocess',
    label: 'cluster-shm (in-process, primary)',
    file: './cluster-shm.js',
    inProcess: true,
    how: "the primary's own `shm.get` / `shm.set`, served in-process; the in-flight lanes all run in the primary",
    workloads: ALL,
  },
  {
    id: 'socket-floor',
    label: 'socket floor (bare client → broker)',
    file: './socket-floor.js',
    reference: true,
    how: "not a peer: each worker talks to cluster-shm's broker through a bare `net.Socket` client (bench/lib/socket-floor.js) that only encodes commands, JSON.stringify's values and JSON.parse's replies, with no timeouts, reconnection, checks or API; it does less per call than any usable client, so what it reaches shows what the socket round trip itself leaves for every client of the broker (and the targets' table quotes it where a target is missed)",
    workloads: ['json'],
  },
  {
    id: 'classic',
    label: 'classic process.send (examples/classic)',
    file: './classic.js',
    how: '`new Manager()` in the primary, `new User()` per worker, `user.get/set(…, cb)` wrapped in Promises',
    workloads: [...ALL, 'read'],
  },
  {
    id: 'memored',
    label: 'memored',
    file: './memored.js',
    package: 'memored',
    how: 'required in the primary before forking; `memored.store` / `memored.read` in workers, wrapped in Promises',
    workloads: ALL,
  },
  {
    id: 'lru-clusters',
    label: 'lru-cache-for-clusters-as-promised',
    file: './lru-clusters.js',
    package: 'lru-cache-for-clusters-as-promised',
    how: "`init()` in the primary, `getInstance({ timeout: 60000, failsafe: 'reject' })` in workers (the 100 ms default timeout would answer slow requests with a silent `undefined`)",
    workloads: ALL,
  },
  {
    id: 'ioredis',
    label: 'ioredis → redis-server',
    file: './ioredis.js',
    package: 'ioredis',
    needsRedis: true,
    how: 'one connection per worker to a fresh redis-server on a Unix socket; JSON text via `JSON.stringify` / `JSON.parse`, Buffers via `getBuffer`',
    workloads: [...ALL, 'read'],
  },
  {
    id: 'ioredis-autopipeline',
    label: 'ioredis (autopipelining) → redis-server',
    file: './ioredis.js',
    package: 'ioredis',
    needsRedis: true,
    options: { enableAutoPipelining: true },
    how: 'as above with `enableAutoPipelining: true`',
    workloads: [...ALL, 'read'],
  },
  {
    id: 'lmdb',
    label: 'lmdb-js (memory-mapped, noSync)',
    file: './lmdb.js',
    package: 'lmdb',
    how: "the primary creates an LMDB environment in a fresh directory on tmpfs (/dev/shm; else the OS temp dir) and each worker opens the same path, all with `{ noSync: true, useWritemap: true, useVersions: false, mapSize: 1 GiB }` and no object cache; `db.get` (a synchronous read of the memory map, wrapped in an async function) and `await db.put` (resolves once lmdb-js's write thread has committed it); JSON objects stored as they are in lmdb-js's default MessagePack encoding with `sharedStructuresKey`, Buffers with `encoding: 'binary'`. *store* is the data file's allocated size",
    workloads: ALL,
  },
];

function systemById(id) {
  const system = SYSTEMS.find((s) => s.id === id);
  if (!system) throw new Error(`unknown system ${JSON.stringify(id)}; known: ${SYSTEMS.map((s) => s.id).join(', ')}`);
  return system;
}

/** The module implementing a system: { primary(ctx), client(ctx) }. */
function loadSystem(system) {
  return require(system.file);
}

module.exports = { SYSTEMS, systemById, loadSystem };

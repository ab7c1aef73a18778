'use strict';

/**
 * The systems under test. Each entry names the module that sets it up in the
 * primary and in a worker; `inProcess` runs the load in the primary itself.
 * Only metadata here, so the orchestrator can list systems without loading
 * any of them (loading cluster-shm in the orchestrator would start a broker).
 */

const SYSTEMS = [
  {
    id: 'cluster-shm',
    label: 'cluster-shm (workers → broker)',
    file: './cluster-shm.js',
    how: "`require('cluster-shm')` in the primary (starts the broker) and in each worker; `shm.get` / `shm.set` over the broker's socket",
  },
  {
    id: 'cluster-shm-inprocess',
    label: 'cluster-shm (in-process, primary)',
    file: './cluster-shm.js',
    inProcess: true,
    how: "the primary's own `shm.get` / `shm.set`, served in-process; the in-flight lanes all run in the primary",
  },
  {
    id: 'classic',
    label: 'classic process.send (examples/classic)',
    file: './classic.js',
    how: '`new Manager()` in the primary, `new User()` per worker, `user.get/set(…, cb)` wrapped in Promises',
  },
  {
    id: 'memored',
    label: 'memored',
    file: './memored.js',
    package: 'memored',
    how: 'required in the primary before forking; `memored.store` / `memored.read` in workers, wrapped in Promises',
  },
  {
    id: 'lru-clusters',
    label: 'lru-cache-for-clusters-as-promised',
    file: './lru-clusters.js',
    package: 'lru-cache-for-clusters-as-promised',
    how: "`init()` in the primary, `getInstance({ timeout: 60000, failsafe: 'reject' })` in workers (the 100 ms default timeout would answer slow requests with a silent `undefined`)",
  },
  {
    id: 'ioredis',
    label: 'ioredis → redis-server',
    file: './ioredis.js',
    package: 'ioredis',
    needsRedis: true,
    how: 'one connection per worker to a fresh redis-server on a Unix socket; JSON text via `JSON.stringify` / `JSON.parse`, Buffers via `getBuffer`',
  },
  {
    id: 'ioredis-autopipeline',
    label: 'ioredis (autopipelining) → redis-server',
    file: './ioredis.js',
    package: 'ioredis',
    needsRedis: true,
    options: { enableAutoPipelining: true },
    how: 'as above with `enableAutoPipelining: true`',
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

'use strict';

/**
 * The store's figures as Prometheus metrics, through prom-client:
 *
 *   const client = require('prom-client');
 *   require('cluster-shm/prometheus').register(shm, { registry: client.register });
 *
 * Every scrape reads `stats()` once. The figures are the store's, the same
 * from every process: each metric aggregates across a cluster with
 * `aggregator: 'first'`, so prom-client's AggregatorRegistry reports them
 * once rather than summed over the workers. When the store cannot be read,
 * `cluster_shm_up` is 0 and the other metrics keep their last values, so a
 * scrape never fails because of the store.
 */

const { shmError, typeError, CODES } = require('./lib/errors');

/** [name, help, kind, the stats() field]; counters mirror the store's own running totals. */
const METRICS = [
  ['keys', 'Keys in the store', 'gauge', 'keys'],
  ['keys_with_ttl', 'Keys that have a time to live', 'gauge', 'keysWithTtl'],
  ['memory_used_bytes', 'Bytes held by keys, values and their bookkeeping', 'gauge', 'usedMemory'],
  ['memory_peak_bytes', 'Highest memory_used_bytes since the store started', 'gauge', 'peakMemory'],
  ['memory_resident_bytes', "Resident memory of the store's process", 'gauge', 'residentMemory'],
  ['memory_max_bytes', 'Memory bound of the store (0: none)', 'gauge', 'maxMemory'],
  ['keyspace_hits_total', 'Reads that found their key', 'counter', 'keyspaceHits'],
  ['keyspace_misses_total', 'Reads that did not find their key', 'counter', 'keyspaceMisses'],
  ['evicted_keys_total', 'Keys evicted at the memory or key bound', 'counter', 'evictedKeys'],
  ['expired_keys_total', 'Keys removed because their time to live ran out', 'counter', 'expiredKeys'],
  ['commands_total', 'Commands the store processed', 'counter', 'totalCommands'],
  ['connected_clients', 'Connections to the store', 'gauge', 'connectedClients'],
  ['locks_held', 'Locks held (broker only)', 'gauge', 'locksHeld'],
  ['lock_waiters', 'Callers waiting in line for a lock (broker only)', 'gauge', 'lockWaiters'],
];

function loadPromClient() {
  try {
    return require('prom-client');
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND') throw error;
    throw shmError(CODES.MISSING_PEER, "cluster-shm/prometheus needs prom-client: npm install prom-client");
  }
}

/**
 * Registers the store's metrics with a prom-client registry (default:
 * prom-client's global one). `prefix` defaults to `cluster_shm_`. Returns the
 * metrics by name. Registering the same names twice in one registry throws,
 * as prom-client does.
 */
function register(shm, { registry, prefix = 'cluster_shm_' } = {}) {
  if (!shm || typeof shm.stats !== 'function') throw typeError('cluster-shm/prometheus: register(shm, options) takes a cluster-shm handle');
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix)) {
    throw typeError('cluster-shm/prometheus: prefix must be a valid Prometheus metric name prefix', CODES.INVALID_ARG_VALUE);
  }
  const client = loadPromClient();
  const registers = [registry || client.register];

  // One stats() call serves every metric of a scrape: the first metric
  // collected starts it, the others of the same scrape share it.
  let reading = null;
  const read = () => {
    if (!reading) {
      reading = shm.stats().then(
        (stats) => stats,
        () => null,
      );
      setImmediate(() => (reading = null));
    }
    return reading;
  };

  const metrics = {};
  metrics.up = new client.Gauge({
    name: `${prefix}up`,
    help: 'Whether the last scrape could read the store (1) or not (0)',
    registers,
    aggregator: 'first',
    async collect() {
      this.set((await read()) ? 1 : 0);
    },
  });
  for (const [name, help, kind, field] of METRICS) {
    const Metric = kind === 'counter' ? client.Counter : client.Gauge;
    metrics[name] = new Metric({
      name: `${prefix}${name}`,
      help,
      registers,
      aggregator: 'first',
      async collect() {
        const stats = await read();
        // null: not known on this backend (Redis keeps no lock counts).
        if (!stats || stats[field] === null || stats[field] === undefined) return;
        if (kind === 'gauge') return this.set(stats[field]);
        this.reset();
        this.inc(stats[field]);
      },
    });
  }
  return metrics;
}

module.exports = { register };

import type { Registry, Gauge, Counter } from 'prom-client';
import type shm = require('./index');

type Handle = shm.SharedMemory;

declare namespace prometheus {
  interface Options {
    /** The registry to register with; default prom-client's global `register`. */
    registry?: Registry;
    /** Prefix of every metric name; default `cluster_shm_`. */
    prefix?: string;
  }

  /** The registered metrics, by name without the prefix. */
  interface Metrics {
    up: Gauge;
    keys: Gauge;
    keys_with_ttl: Gauge;
    memory_used_bytes: Gauge;
    memory_peak_bytes: Gauge;
    memory_resident_bytes: Gauge;
    memory_max_bytes: Gauge;
    keyspace_hits_total: Counter;
    keyspace_misses_total: Counter;
    evicted_keys_total: Counter;
    expired_keys_total: Counter;
    commands_total: Counter;
    connected_clients: Gauge;
    locks_held: Gauge;
    lock_waiters: Gauge;
  }

  /**
   * Registers the store's figures (read with `stats()` once per scrape) as
   * Prometheus metrics. Throws ERR_SHM_MISSING_PEER when prom-client is not
   * installed.
   */
  function register(handle: Handle, options?: Options): Metrics;
}

export = prometheus;

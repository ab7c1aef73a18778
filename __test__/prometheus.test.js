'use strict';

const http = require('node:http');
const { start } = require('./helpers');
const { BACKEND } = require('./backend');

function scrape(port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve(text));
    }).on('error', reject);
  });
}

/** The exposition text's samples: { name: value }. */
function samples(text) {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => {
        const [name, value] = line.split(' ');
        return [name, Number(value)];
      }),
  );
}

describe('cluster-shm/prometheus', () => {
  let app;
  let port;
  // Per test: a shared store (standalone, redis) is emptied before each one.
  beforeEach(async () => {
    app = start('prometheus.js');
    ({ port } = await app.waitFor((m) => m.port));
  });
  afterEach(async () => {
    app.child.stdin.end();
    await app.done;
  });

  test('a scrape of the registry reports the store: keys, ttl keys, hits, misses, commands, clients', async () => {
    const metrics = samples(await scrape(port, '/metrics'));
    expect(Object.keys(metrics).sort()).toEqual(
      [
        'up',
        'keys',
        'keys_with_ttl',
        'memory_used_bytes',
        'memory_peak_bytes',
        'memory_resident_bytes',
        'memory_max_bytes',
        'keyspace_hits_total',
        'keyspace_misses_total',
        'evicted_keys_total',
        'expired_keys_total',
        'commands_total',
        'connected_clients',
        'locks_held',
        'lock_waiters',
      ]
        .map((name) => `cluster_shm_${name}`)
        .sort(),
    );
    expect({ up: metrics.cluster_shm_up, keys: metrics.cluster_shm_keys, withTtl: metrics.cluster_shm_keys_with_ttl }).toEqual({ up: 1, keys: 2, withTtl: 1 });
    // Each test run of a shared store (standalone, redis) counts reads from earlier test files too.
    const reads = { hits: metrics.cluster_shm_keyspace_hits_total, misses: metrics.cluster_shm_keyspace_misses_total };
    if (BACKEND === 'embedded') expect(reads).toEqual({ hits: 1, misses: 1 });
    else expect(Math.min(reads.hits, reads.misses)).toBeGreaterThanOrEqual(1);
    expect(metrics.cluster_shm_commands_total).toBeGreaterThanOrEqual(4);
    expect(metrics.cluster_shm_memory_used_bytes).toBeGreaterThan(0);
    // The primary and the two workers (the workers' connections; on Redis more).
    expect(metrics.cluster_shm_connected_clients).toBeGreaterThanOrEqual(2);
  });

  test("prom-client's cluster aggregate reports the store's figures once, not summed over the workers", async () => {
    const metrics = samples(await scrape(port, '/cluster'));
    expect({ up: metrics.cluster_shm_up, keys: metrics.cluster_shm_keys, withTtl: metrics.cluster_shm_keys_with_ttl }).toEqual({ up: 1, keys: 2, withTtl: 1 });
  });

  test('register() refuses what is not a handle, with a code', () => {
    const { register } = require('../prometheus');
    let error;
    try {
      register({});
    } catch (caught) {
      error = caught;
    }
    expect({ type: error.constructor.name, code: error.code }).toEqual({ type: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });
});

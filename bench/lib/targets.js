'use strict';

/**
 * The project's performance targets, checked against this run's
 * measurements. A target whose inputs were not measured (a system skipped,
 * a run failed) says so instead of passing or failing.
 */

/** The systems the targets compare: the ones whose target runs repeat in rounds (bench/lib/args.js). */
const TARGET_SYSTEMS = ['cluster-shm', 'socket-floor', 'classic', 'ioredis', 'ioredis-autopipeline', 'lmdb'];

/** How a target names a workload's values. */
const VALUES = { json: '100 B', buffer: '64 KiB' };

function findRun(runs, system, workers, depth, workload = 'json') {
  return runs.find((r) => r.ok && r.system === system && r.workers === workers && r.depth === depth && r.workload === workload);
}

const fmtRatio = (r) => `${r.toFixed(2)}×`;

function check(name, required, compute) {
  let value;
  try {
    value = compute();
  } catch (error) {
    value = { missing: error.message };
  }
  if (!value || value.missing) return { name, required, measured: `not measured (${value ? value.missing : 'missing'})`, status: 'not measured' };
  return { name, required, measured: value.text, status: value.met ? 'met' : 'missed' };
}

function need(thing, what) {
  if (!thing) throw new Error(`${what} has no result`);
  return thing;
}

/**
 * For a missed target, what the socket floor (the least any client of the
 * broker can do, bench/systems/socket-floor.js) reached in the same run.
 */
function floorNote(met, runs, depth, describe, workload = 'json') {
  const floor = findRun(runs, 'socket-floor', 2, depth, workload);
  return met || !floor ? '' : `; the socket floor reached ${describe(floor)}`;
}

/** Throughput ratio of cluster-shm over `peer` at 2 workers, 100-byte values (or the 64 KiB ones of `workload` buffer). */
function throughputTarget(runs, peer, peerLabel, depth, factor, workload = 'json') {
  return check(`cluster-shm ≥ ${factor}× ${peerLabel} ops/s (2 workers, ${VALUES[workload]}, ${depth} in flight)`, `≥ ${factor}×`, () => {
    const shm = need(findRun(runs, 'cluster-shm', 2, depth, workload), `cluster-shm at 2 workers (${workload})`);
    const other = need(findRun(runs, peer, 2, depth, workload), `${peer} at 2 workers (${workload})`);
    const r = shm.opsPerSec / other.opsPerSec;
    const met = r >= factor;
    const floor = floorNote(met, runs, depth, (f) => fmtRatio(f.opsPerSec / other.opsPerSec), workload);
    return { met, text: `${fmtRatio(r)} (${Math.round(shm.opsPerSec).toLocaleString('en-US')} vs ${Math.round(other.opsPerSec).toLocaleString('en-US')} ops/s)${floor}` };
  });
}

function evaluateTargets({ runs, raw, memoryPerKey, workerKeys }) {
  const targets = [
    throughputTarget(runs, 'classic', 'classic', 64, 10),
    throughputTarget(runs, 'classic', 'classic', 1, 3),
    throughputTarget(runs, 'ioredis', 'ioredis → redis-server', 1, 1.2),
    throughputTarget(runs, 'ioredis', 'ioredis → redis-server', 64, 1.2),
    throughputTarget(runs, 'ioredis-autopipeline', 'ioredis (autopipelining) → redis-server', 1, 1.2),
    throughputTarget(runs, 'ioredis-autopipeline', 'ioredis (autopipelining) → redis-server', 64, 1.2),
    // The shared-store targets, against classic and lmdb-js (whose workers
    // read a memory-mapped file directly). Their goal against classic at 64
    // in flight, ≥ 10×, is the first target above.
    throughputTarget(runs, 'classic', 'classic', 1, 20),
    throughputTarget(runs, 'lmdb', 'lmdb-js', 1, 5),
    throughputTarget(runs, 'lmdb', 'lmdb-js', 64, 1.2),
    throughputTarget(runs, 'lmdb', 'lmdb-js', 1, 1.5, 'buffer'),
    throughputTarget(runs, 'lmdb', 'lmdb-js', 64, 1.5, 'buffer'),
  ];

  for (const test of ['get', 'set']) {
    targets.push(
      check(`broker ≥ 1.0× redis-server under redis-benchmark -P 16 (${test.toUpperCase()})`, '≥ 1.00×', () => {
        const results = need(raw && raw.results, 'redis-benchmark');
        const broker = need(results.find((r) => r.server === 'cluster-shm broker' && r.pipeline === 16 && !r.error), 'broker -P 16');
        const redis = need(results.find((r) => r.server === 'redis-server' && r.pipeline === 16 && !r.error), 'redis-server -P 16');
        const r = broker[test] / redis[test];
        return { met: r >= 1, text: `${fmtRatio(r)} (${Math.round(broker[test]).toLocaleString('en-US')} vs ${Math.round(redis[test]).toLocaleString('en-US')} req/s)` };
      }),
    );
  }

  targets.push(
    check('cluster-shm p99 at 1 in flight ≤ classic p50 (2 workers, 100 B)', 'p99 ≤ classic p50', () => {
      const shm = need(findRun(runs, 'cluster-shm', 2, 1), 'cluster-shm at 2 workers');
      const classic = need(findRun(runs, 'classic', 2, 1), 'classic at 2 workers');
      const p99 = shm.latencyNs.p99 / 1000;
      const p50 = classic.latencyNs.p50 / 1000;
      const met = p99 <= p50;
      const floor = floorNote(met, runs, 1, (f) => `p99 ${(f.latencyNs.p99 / 1000).toFixed(1)} µs`);
      return { met, text: `p99 ${p99.toFixed(1)} µs vs classic p50 ${p50.toFixed(1)} µs${floor}` };
    }),
  );

  // Data calls run in the workers on the mapped store: the broker's process
  // should be all but idle while they run ("close to zero": 5 % of a core).
  for (const depth of [1, 64]) {
    targets.push(
      check(`broker process CPU during cluster-shm's data load ≤ 5 % of a core (2 workers, 100 B, ${depth} in flight)`, '≤ 5 %', () => {
        const shm = need(findRun(runs, 'cluster-shm', 2, depth), 'cluster-shm at 2 workers');
        if (shm.serverBusy === null || shm.serverBusy === undefined) throw new Error('no CPU figure for the broker');
        const busy = shm.serverBusy * 100;
        return { met: busy <= 5, text: `${busy.toFixed(1)} % of a core` };
      }),
    );
  }

  targets.push(
    check('cluster-shm p99 at 1 in flight ≤ 20 µs (2 workers, 100 B)', 'p99 ≤ 20 µs', () => {
      const shm = need(findRun(runs, 'cluster-shm', 2, 1), 'cluster-shm at 2 workers');
      const p99 = shm.latencyNs.p99 / 1000;
      const met = p99 <= 20;
      const floor = floorNote(met, runs, 1, (f) => `p99 ${(f.latencyNs.p99 / 1000).toFixed(1)} µs`);
      return { met, text: `p99 ${p99.toFixed(1)} µs${floor}` };
    }),
  );

  targets.push(
    check('broker memory per 100-byte key ≤ redis-server (INFO used_memory delta)', '≤ 1.00× redis', () => {
      const results = need(memoryPerKey && memoryPerKey.results, 'memory per key');
      const broker = need(results.find((r) => r.server === 'cluster-shm broker'), 'broker memory');
      const redis = need(results.find((r) => r.server === 'redis-server'), 'redis-server memory');
      const r = broker.usedPerKey / redis.usedPerKey;
      return { met: broker.usedPerKey <= redis.usedPerKey, text: `${broker.usedPerKey.toFixed(1)} vs ${redis.usedPerKey.toFixed(1)} B/key (${fmtRatio(r)})` };
    }),
  );
  targets.push(
    check("a worker's keys() of 1,000,000 keys ≤ 3× redis-cli KEYS on the same socket (median of 3)", '≤ 3.00×', () => {
      const measured = need(workerKeys && !workerKeys.error && !workerKeys.skipped && workerKeys, "the keys() comparison");
      const r = measured.workerMedianMs / measured.redisCliMedianMs;
      return { met: r <= 3, text: `${fmtRatio(r)} (${measured.workerMedianMs.toFixed(0)} vs ${measured.redisCliMedianMs.toFixed(0)} ms)` };
    }),
  );
  return targets;
}

module.exports = { evaluateTargets, findRun, TARGET_SYSTEMS };

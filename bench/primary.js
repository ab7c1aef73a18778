'use strict';

/**
 * One benchmark run: `node bench/primary.js <runDir>`.
 *
 * Reads <runDir>/config.json, sets the system up in this (cluster primary)
 * process, forks the workers (or, for the in-process row, runs the load
 * itself), and writes <runDir>/result.json. The orchestrator starts this
 * script in a process group of its own per run, so the primary, its workers
 * and any server it started all go away together, even on failure.
 */

const cluster = require('node:cluster');
const fs = require('node:fs');
const path = require('node:path');
const { systemById, loadSystem } = require('./systems');
const { WORKLOADS } = require('./lib/workload');
const { prefill, runLoad, readAll } = require('./lib/load');
const { Histogram } = require('./lib/histogram');
const { workerMessage } = require('./lib/worker-message');

const SAMPLE_EVERY_MS = 100;
/** Idle time after the load before the views are compared: invalidations still on their way arrive. */
const VERIFY_SETTLE_MS = 100;
/** Time for the 'go' message to reach every worker before warm-up counts. */
const START_MARGIN_NS = 30_000_000n;

const runDir = process.argv[2];
const config = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8'));
const system = systemById(config.system);
const workload = WORKLOADS[config.workload];

function writeResult(result) {
  fs.writeFileSync(path.join(runDir, 'result.json'), JSON.stringify(result));
}

/** Samples the host's memory every SAMPLE_EVERY_MS, keeping the peaks. */
function startSampler(host) {
  const peak = { storePeak: null, rssPeak: 0, samples: 0 };
  let busy = false;
  const sample = async () => {
    if (busy) return;
    busy = true;
    try {
      const { storePeak, rss } = await host.memory();
      if (storePeak !== null && storePeak !== undefined) peak.storePeak = Math.max(peak.storePeak ?? 0, storePeak);
      peak.rssPeak = Math.max(peak.rssPeak, rss);
      peak.samples++;
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => sample().catch(() => {}), SAMPLE_EVERY_MS);
  return {
    sample,
    async stop() {
      clearInterval(timer);
      while (busy) await new Promise((resolve) => setTimeout(resolve, 5));
      await sample(); // the final state always counts
      return peak;
    },
  };
}

function schedule() {
  const warmupNs = BigInt(Math.round(config.warmupMs * 1e6));
  const durationNs = BigInt(Math.round(config.durationMs * 1e6));
  const measureStart = process.hrtime.bigint() + START_MARGIN_NS + warmupNs;
  return { measureStart, measureEnd: measureStart + durationNs };
}

async function runWithWorkers(workerEnv, host) {
  cluster.setupPrimary({ exec: path.join(__dirname, 'worker.js'), args: [runDir] });
  const workers = [];
  for (let i = 0; i < config.workers; i++) {
    workers.push(cluster.fork({ ...workerEnv, BENCH_WORKER_INDEX: String(i) }));
  }
  await Promise.all(workers.map((w) => workerMessage(w, 'bench', 'ready')));

  // One worker fills every key through the system's own client API.
  const filled = workerMessage(workers[0], 'bench', 'filled');
  workers[0].send({ bench: 'prefill' });
  const { prefillMs } = await filled;

  if (workload.warmRead) {
    // Every worker reads every key once: caches in the workers start full.
    const warmed = workers.map((w) => workerMessage(w, 'bench', 'warmed'));
    for (const w of workers) w.send({ bench: 'warm' });
    for (const { result } of await Promise.all(warmed)) {
      if (result.misses || result.wrong || result.errors) {
        throw new Error(`the warm read pass saw ${result.misses} misses, ${result.wrong} wrong values, ${result.errors} errors${result.firstError ? ` (${result.firstError.split('\n')[0]})` : ''}`);
      }
    }
  }

  const { measureStart, measureEnd } = schedule();
  const results = workers.map((w) => workerMessage(w, 'bench', 'result'));
  const serverCpu = measureServerCpu(host.serverPid ?? process.pid, measureStart, measureEnd);
  for (const w of workers) w.send({ bench: 'go', measureStart: String(measureStart), measureEnd: String(measureEnd) });
  const perWorker = await Promise.all(results);
  const serverBusy = await serverCpu;

  let verify = null;
  if (workload.verify) verify = await verifyViews(workers, host);

  for (const w of workers) w.send({ bench: 'exit' });
  return { prefillMs, perWorker: perWorker.map((m) => m.result), verify, serverBusy };
}

/** CPU time of every thread of a process so far, in ns (/proc/<pid>/task/<tid>/schedstat). */
function processCpuNs(pid) {
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return total;
}

/**
 * The share of one core the process holding the data (the broker's
 * primary, redis-server, the classic primary) used during the measured
 * window: the CPU its threads ran, over the window's length. Null where
 * /proc has no schedstat.
 */
async function measureServerCpu(pid, measureStart, measureEnd) {
  if (!fs.existsSync(`/proc/${pid}/task`)) return null;
  const until = (t) => new Promise((resolve) => setTimeout(resolve, Math.max(0, Number(t - process.hrtime.bigint()) / 1e6)));
  await until(measureStart);
  const [t0, cpu0] = [process.hrtime.bigint(), processCpuNs(pid)];
  await until(measureEnd);
  const [t1, cpu1] = [process.hrtime.bigint(), processCpuNs(pid)];
  return (cpu1 - cpu0) / Number(t1 - t0);
}

/**
 * After the load, with nothing writing: every worker reads every key once
 * through its client, and the primary compares what they saw, key by key,
 * with each other and (cluster-shm, whose primary reads the store itself)
 * with the store. A key seen differently is a stale view: for a near cache,
 * an entry that missed its invalidation.
 */
async function verifyViews(workers, host) {
  await new Promise((resolve) => setTimeout(resolve, VERIFY_SETTLE_MS));
  const verified = workers.map((w) => workerMessage(w, 'bench', 'verified'));
  for (const w of workers) w.send({ bench: 'verify' });
  const views = (await Promise.all(verified)).map((m) => m.result);
  let authority = null;
  if (host.client) {
    authority = (await readAll(host.client, workload)).ids;
  }
  const summary = { keys: workload.keys, reads: 0, misses: 0, wrong: 0, errors: 0, firstError: null, stale: 0, staleExamples: [], against: authority ? 'the store (read in the primary)' : 'each other' };
  for (const view of views) {
    for (const name of ['reads', 'misses', 'wrong', 'errors']) summary[name] += view[name];
    summary.firstError = summary.firstError ?? view.firstError;
  }
  for (let i = 0; i < workload.keys; i++) {
    const seen = views.map((v) => v.ids[i]);
    const reference = authority ? authority[i] : seen.find((id) => id !== null);
    if (seen.some((id) => id !== null && id !== reference)) {
      summary.stale++;
      if (summary.staleExamples.length < 3) summary.staleExamples.push({ key: i, store: authority ? authority[i] : undefined, workers: seen });
    }
  }
  return summary;
}

/** The workers' near cache counters, summed: hits and misses of the measured window, and over the whole run. */
function sumNearCache(perWorker) {
  const withStats = perWorker.filter((r) => r.nearCache);
  if (withStats.length === 0) return null;
  const sum = { hits: 0, misses: 0, keysAtEnd: 0, runHits: 0, runMisses: 0, workersWithCache: 0, windowComplete: true };
  for (const { nearCache } of withStats) {
    if (nearCache.end) {
      sum.workersWithCache++;
      sum.keysAtEnd += nearCache.end.keys;
      sum.runHits += nearCache.end.hits;
      sum.runMisses += nearCache.end.misses;
    }
    if (nearCache.window) {
      sum.hits += nearCache.window.hits;
      sum.misses += nearCache.window.misses;
    } else sum.windowComplete = false;
  }
  sum.hitRate = sum.hits + sum.misses > 0 ? sum.hits / (sum.hits + sum.misses) : null;
  return sum;
}

async function runInProcess(host) {
  const prefillMs = await prefill(host.client, workload);
  const { measureStart, measureEnd } = schedule();
  // Yield to the event loop every 256 requests of a lane so the memory sampler runs.
  const result = await runLoad(host.client, workload, { depth: config.depth, measureStart, measureEnd, yieldEvery: 256 });
  return { prefillMs, perWorker: [result] };
}

async function main() {
  const started = Date.now();
  const workerEnv = { BENCH_RUN_DIR: runDir };
  const host = await loadSystem(system).primary({ runDir, workerEnv, workload, system });
  const sampler = startSampler(host);
  let outcome;
  let memory;
  try {
    outcome = system.inProcess ? await runInProcess(host) : await runWithWorkers(workerEnv, host);
  } finally {
    memory = await sampler.stop().catch((error) => ({ error: String(error) }));
  }
  await host.close();

  // Merge the workers' histograms: percentiles of the merged counts are the
  // percentiles of every sample.
  const histogram = new Histogram();
  const totals = { ops: 0, gets: 0, sets: 0, misses: 0, wrong: 0, errors: 0 };
  let firstError = null;
  for (const r of outcome.perWorker) {
    histogram.merge(r.histogram);
    for (const name of Object.keys(totals)) totals[name] += r[name];
    firstError = firstError ?? r.firstError;
  }
  const warnings = [...new Set(outcome.perWorker.flatMap((r) => r.warnings || []))];
  writeResult({
    ok: true,
    ...totals,
    firstError,
    opsPerWorker: outcome.perWorker.map((r) => r.ops),
    durationMs: config.durationMs,
    prefillMs: outcome.prefillMs,
    latencyNs: {
      p50: histogram.quantile(0.5),
      p90: histogram.quantile(0.9),
      p99: histogram.quantile(0.99),
      p999: histogram.quantile(0.999),
      max: histogram.max,
      mean: histogram.mean(),
      samples: histogram.total,
    },
    memory: { ...memory, rssSource: host.rssSource },
    nearCache: sumNearCache(outcome.perWorker),
    verify: outcome.verify ?? null,
    serverBusy: outcome.serverBusy ?? null,
    serverSource: system.inProcess ? null : host.serverPid ? 'server process' : 'primary process',
    warnings,
    wallMs: Date.now() - started,
  });
}

main().then(
  () => process.exit(0),
  (error) => {
    try {
      writeResult({ ok: false, error: String(error && error.stack ? error.stack : error) });
    } finally {
      process.exit(1);
    }
  },
);

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
const { prefill, runLoad } = require('./lib/load');
const { Histogram } = require('./lib/histogram');

const SAMPLE_EVERY_MS = 100;
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

/** Resolves with the first message of `type` from `worker`; rejects if the worker dies or reports an error. */
function expectMessage(worker, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (!message || message.bench === undefined) return;
      if (message.bench === 'error') {
        cleanup();
        reject(new Error(`worker ${worker.id}: ${message.error}`));
      } else if (message.bench === type) {
        cleanup();
        resolve(message);
      }
    };
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`worker ${worker.id} exited (${code ?? signal}) while the primary waited for '${type}'`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('exit', onExit);
  });
}

async function runWithWorkers(workerEnv) {
  cluster.setupPrimary({ exec: path.join(__dirname, 'worker.js'), args: [runDir] });
  const workers = [];
  for (let i = 0; i < config.workers; i++) {
    workers.push(cluster.fork({ ...workerEnv, BENCH_WORKER_INDEX: String(i) }));
  }
  await Promise.all(workers.map((w) => expectMessage(w, 'ready')));

  // One worker fills every key through the system's own client API.
  const filled = expectMessage(workers[0], 'filled');
  workers[0].send({ bench: 'prefill' });
  const { prefillMs } = await filled;

  const { measureStart, measureEnd } = schedule();
  const results = workers.map((w) => expectMessage(w, 'result'));
  for (const w of workers) w.send({ bench: 'go', measureStart: String(measureStart), measureEnd: String(measureEnd) });
  const perWorker = await Promise.all(results);

  for (const w of workers) w.send({ bench: 'exit' });
  return { prefillMs, perWorker: perWorker.map((m) => m.result) };
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
    outcome = system.inProcess ? await runInProcess(host) : await runWithWorkers(workerEnv);
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

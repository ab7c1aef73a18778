'use strict';

/**
 * A cluster worker of one run (forked by bench/primary.js): connects the
 * system's client, pre-fills when asked, runs the load on 'go', and sends its
 * counts and latency histogram back; on 'warm' and 'verify' (workloads
 * with `warmRead` / `verify`) it reads every key once and sends what it saw.
 */

const fs = require('node:fs');
const path = require('node:path');
const { systemById, loadSystem } = require('./systems');
const { WORKLOADS } = require('./lib/workload');
const { prefill, runLoad, readAll } = require('./lib/load');

const runDir = process.env.BENCH_RUN_DIR;
const config = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8'));
const system = systemById(config.system);
const workload = WORKLOADS[config.workload];

// The primary is gone (finished or failed): nothing left to do here.
process.on('disconnect', () => process.exit(0));

// Process warnings (such as a near cache turning itself off) go into the
// result, so the report shows them instead of a silently different system.
const warnings = [];
process.on('warning', (warning) => {
  const text = `${warning.code ? `${warning.code}: ` : ''}${warning.message}`;
  if (warnings.length < 5 && !warnings.includes(text)) warnings.push(text);
});

function fail(error) {
  process.send({ bench: 'error', error: String(error && error.stack ? error.stack : error) });
}

/**
 * Runs the load; for a system with a near cache, also reads its counters as
 * the measured window opens and after the load, so the hit rate is that of
 * the measured window.
 */
async function load(client, options) {
  const impl = loadSystem(system);
  const sample = system.nearCache && impl.nearCacheStats ? () => impl.nearCacheStats(client).catch(() => null) : null;
  let atStart = null;
  let timer = null;
  if (sample) {
    const delayMs = Math.max(0, Number(options.measureStart - process.hrtime.bigint()) / 1e6);
    timer = setTimeout(() => {
      atStart = sample();
    }, delayMs);
  }
  const result = await runLoad(client, workload, options);
  if (sample) {
    clearTimeout(timer);
    const start = await atStart;
    const end = await sample();
    result.nearCache = {
      start,
      end,
      window: start && end ? { hits: end.hits - start.hits, misses: end.misses - start.misses } : null,
    };
  }
  result.warnings = warnings;
  return result;
}

async function main() {
  const client = await loadSystem(system).client({ workload, system });

  process.on('message', (message) => {
    if (!message || message.bench === undefined) return;
    if (message.bench === 'prefill') {
      prefill(client, workload).then((prefillMs) => process.send({ bench: 'filled', prefillMs }), fail);
    } else if (message.bench === 'go') {
      const options = { depth: config.depth, measureStart: BigInt(message.measureStart), measureEnd: BigInt(message.measureEnd) };
      load(client, options).then((result) => process.send({ bench: 'result', result }), fail);
    } else if (message.bench === 'warm') {
      readAll(client, workload).then(({ ids, ...counts }) => process.send({ bench: 'warmed', result: counts }), fail);
    } else if (message.bench === 'verify') {
      readAll(client, workload).then((result) => process.send({ bench: 'verified', result: { ...result, warnings } }), fail);
    } else if (message.bench === 'exit') {
      Promise.resolve(client.close()).finally(() => process.exit(0));
    }
  });
  process.send({ bench: 'ready' });
}

main().catch(fail);

'use strict';

/**
 * A cluster worker of one run (forked by bench/primary.js): connects the
 * system's client, pre-fills when asked, runs the load on 'go', and sends its
 * counts and latency histogram back.
 */

const fs = require('node:fs');
const path = require('node:path');
const { systemById, loadSystem } = require('./systems');
const { WORKLOADS } = require('./lib/workload');
const { prefill, runLoad } = require('./lib/load');

const runDir = process.env.BENCH_RUN_DIR;
const config = JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8'));
const system = systemById(config.system);
const workload = WORKLOADS[config.workload];

// The primary is gone (finished or failed): nothing left to do here.
process.on('disconnect', () => process.exit(0));

function fail(error) {
  process.send({ bench: 'error', error: String(error && error.stack ? error.stack : error) });
}

async function main() {
  const client = await loadSystem(system).client({ workload, system });

  process.on('message', (message) => {
    if (!message || message.bench === undefined) return;
    if (message.bench === 'prefill') {
      prefill(client, workload).then((prefillMs) => process.send({ bench: 'filled', prefillMs }), fail);
    } else if (message.bench === 'go') {
      const options = { depth: config.depth, measureStart: BigInt(message.measureStart), measureEnd: BigInt(message.measureEnd) };
      runLoad(client, workload, options).then((result) => process.send({ bench: 'result', result }), fail);
    } else if (message.bench === 'exit') {
      Promise.resolve(client.close()).finally(() => process.exit(0));
    }
  });
  process.send({ bench: 'ready' });
}

main().catch(fail);

#!/usr/bin/env node
'use strict';

/**
 * `npm run bench`: runs every (system, workload, workers, in-flight) run as a
 * fresh process tree (bench/primary.js in a process group and temp dir of its
 * own), then the redis-benchmark, memory-per-key and keys() sections, and writes
 * bench/results/latest.{md,json,svg} (or the --out path's). See `npm run bench -- --help`.
 */

const fs = require('node:fs');
const path = require('node:path');
const { USAGE, parseArgs, planRuns } = require('./lib/args');
const { runPrimary } = require('./lib/proc');
const { which } = require('./lib/redis-server');
const { describeMachine, describeAddon, loadAverage } = require('./lib/machine');
const { SYSTEMS, systemById } = require('./systems');
const { WORKLOADS } = require('./lib/workload');
const { evaluateTargets } = require('./lib/targets');
const { renderMarkdown } = require('./lib/report');
const { throughputChart } = require('./lib/svg');
const { runRawServer } = require('./sections/raw-server');
const { runMemoryPerKey } = require('./sections/memory-per-key');
const { runWorkerKeys } = require('./sections/worker-keys');
const { int, micros, hitRate } = require('./lib/format');

const RESULTS = path.join(__dirname, 'results');
const log = (line) => process.stderr.write(`${line}\n`);

/** Writes through a .tmp file and a rename, so a results file is never half written. */
function writeAtomic(file, text) {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

function runTimeoutMs(options, workload) {
  // Start-up and pre-fill on top of warm-up and measurement; the 64 KiB
  // pre-fill through JSON IPC takes seconds.
  return (options.warmup + options.duration) * 1000 + (workload === 'buffer' ? 60_000 : 30_000);
}

function summarize(run) {
  if (!run.ok) return `FAILED: ${String(run.error).split('\n')[0]}`;
  const warn = run.errors || run.misses || run.wrong ? `  ⚠ ${run.errors} errors, ${run.misses} misses, ${run.wrong} wrong` : '';
  const near = run.nearCache ? `  near-cache hits ${hitRate(run.nearCache)}` : '';
  const v = run.verify;
  const verify = v && (v.stale || v.misses || v.wrong || v.errors) ? `  ⚠ after the load: ${v.stale} keys stale, ${v.misses} misses, ${v.wrong} wrong, ${v.errors} errors` : '';
  const warnings = (run.warnings || []).map((w) => `  ⚠ ${w}`).join('');
  const server = run.serverBusy === null || run.serverBusy === undefined ? '' : `  server CPU ${(run.serverBusy * 100).toFixed(1)} %`;
  return `${int(run.opsPerSec).padStart(10)} ops/s  p50 ${micros(run.latencyNs.p50).padStart(8)} µs  p99 ${micros(run.latencyNs.p99).padStart(8)} µs${server}${warn}${near}${verify}${warnings}`;
}

/**
 * One run per (system, workload, workers, depth): where it ran several
 * rounds, the round with the median ops/s (a failed round counts as the
 * slowest), with every round's ops/s in `roundsOpsPerSec`.
 */
function medianRounds(allRounds) {
  const groups = new Map();
  for (const run of allRounds) {
    const id = `${run.system}/${run.workload}/${run.workers}/${run.depth}`;
    if (!groups.has(id)) groups.set(id, []);
    groups.get(id).push(run);
  }
  return [...groups.values()].map((rounds) => {
    if (rounds.length === 1) return rounds[0];
    const sorted = [...rounds].sort((a, b) => (a.ok ? a.opsPerSec : -1) - (b.ok ? b.opsPerSec : -1));
    return { ...sorted[Math.floor((sorted.length - 1) / 2)], roundsOpsPerSec: rounds.map((r) => (r.ok ? r.opsPerSec : null)) };
  });
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error) {
    log(`bench: ${error.message}`);
    process.exitCode = 2;
    return;
  }
  if (options.help) {
    process.stdout.write(USAGE);
    return;
  }
  const started = Date.now();
  const machine = describeMachine();
  const skipped = [];
  const { addon } = machine;
  if (!addon.present) log('bench: ⚠ the native addon is missing: run `npm run build` first');
  else if (addon.debugBuild) log('bench: ⚠ the native addon is a debug build: run `npm run build` (release) for meaningful numbers');
  if (addon.present && addon.newerSources.length) log(`bench: ⚠ the native addon is older than ${addon.newerSources.join(', ')}: run \`npm run build\``);
  const redisAvailable = Boolean(which('redis-server'));
  if (!redisAvailable) {
    const message = 'redis-server is not installed: the ioredis rows, the redis-server side of redis-benchmark and of memory per key are skipped';
    skipped.push(message);
    log(`bench: ${message}`);
  }

  const { runs: plan, matrix } = planRuns(options, { redisAvailable });
  log(`bench: ${plan.length} runs, warm-up ${options.warmup} s + ${options.duration} s each${options.full ? '' : ' (partial run)'}`);

  const allRounds = [];
  for (const [index, config] of plan.entries()) {
    const system = systemById(config.system);
    const round = config.rounds > 1 ? ` r${config.round}` : '   ';
    const prefix = `[${String(index + 1).padStart(2)}/${plan.length}] ${config.workload.padEnd(6)} ${system.id.padEnd(22)} w=${config.workers} d=${String(config.depth).padEnd(2)}${round}`;
    const result = await runPrimary({ ...config, warmupMs: options.warmup * 1000, durationMs: options.duration * 1000 }, runTimeoutMs(options, config.workload));
    const run = { ...config, label: system.label, ...result };
    if (run.ok) run.opsPerSec = run.ops / (run.durationMs / 1000);
    allRounds.push(run);
    log(`${prefix}  ${summarize(run)}`);
    if (!run.ok && run.output) log(run.output.split('\n').slice(-8).map((l) => `      ${l}`).join('\n'));
  }
  const runs = medianRounds(allRounds);

  let raw = null;
  let memoryPerKey = null;
  let workerKeys = null;
  if (options.raw) {
    log('bench: raw server comparison (redis-benchmark)');
    raw = await runRawServer({ quick: options.quick, redisAvailable, log }).catch((error) => ({ skipped: `failed: ${error.message}` }));
    if (raw.skipped) {
      skipped.push(raw.skipped);
      log(`bench: ${raw.skipped}`);
    }
    log('bench: memory per 100-byte key');
    memoryPerKey = await runMemoryPerKey({ redisAvailable }).catch((error) => ({ error: error.message }));
    log("bench: a worker's keys() of 1,000,000 keys vs redis-cli KEYS");
    workerKeys = await runWorkerKeys({ log }).catch((error) => ({ error: error.message }));
    if (workerKeys.skipped) {
      skipped.push(workerKeys.skipped);
      log(`bench: ${workerKeys.skipped}`);
    }
  }

  const report = {
    machine,
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    full: options.full,
    options: { warmup: options.warmup, duration: options.duration, rounds: options.rounds, quick: options.quick, only: options.only },
    runCount: allRounds.length,
    matrix,
    workloads: WORKLOADS,
    skipped,
    runs,
    raw,
    memoryPerKey,
    workerKeys,
  };
  // Another build may replace the addon while the benchmark runs: say so.
  report.warnings = [];
  const addonAtEnd = describeAddon();
  if (addonAtEnd.builtAt !== addon.builtAt) {
    report.warnings.push(`the native addon was rebuilt during the run (now ${addonAtEnd.debugBuild ? 'debug' : 'release'}, built ${addonAtEnd.builtAt}): cluster-shm rows may mix builds`);
    log(`bench: ⚠ ${report.warnings.at(-1)}`);
  }
  report.targets = evaluateTargets(report);
  report.elapsedSeconds = (Date.now() - started) / 1000;
  report.loadAverageAtEnd = loadAverage();

  const markdown = renderMarkdown(report);
  const out = options.out ? path.resolve(options.out) : path.join(RESULTS, 'latest');
  fs.mkdirSync(path.dirname(out), { recursive: true });
  writeAtomic(`${out}.md`, markdown);
  writeAtomic(`${out}.json`, `${JSON.stringify(report, null, 2)}\n`);
  // One panel per 100-byte workload that ran: 50/50, then 90/10.
  const panels = [
    { workload: 'json', title: 'Throughput, 100-byte JSON values, 50/50 get/set over 10,000 keys' },
    { workload: 'read', title: 'Read-heavy: 100-byte JSON values, 90/10 get/set over 10,000 keys' },
  ]
    .map((panel) => ({ ...panel, runs: runs.filter((r) => r.ok && r.workload === panel.workload) }))
    .filter((panel) => panel.runs.length);
  if (panels.length) {
    const svg = throughputChart({
      panels,
      systems: SYSTEMS,
      subtitle: `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.date.slice(0, 10)}; ${options.duration} s measured per run${options.full ? '' : ' (partial run)'}`,
    });
    writeAtomic(`${out}.svg`, svg);
  }
  process.stdout.write(markdown);
  log(`bench: done in ${report.elapsedSeconds.toFixed(0)} s; wrote ${path.relative(process.cwd(), out)}.{md,json${panels.length ? ',svg' : ''}}`);
}

main().catch((error) => {
  log(`bench: ${error.stack || error}`);
  process.exitCode = 1;
});

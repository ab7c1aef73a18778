#!/usr/bin/env node
'use strict';

/**
 * Does the memory come back when the data goes?
 *
 *   node bench/memory-return.js [--keys 5000000] [--value-bytes 100] [--seconds 30]
 *                               [--drop clear|del] [--keep N] [--target broker|redis] [--json FILE]
 *
 * Two cluster workers fill the store with `keys` keys of `value-bytes`
 * stored bytes (mset batches of 1,000); then the data goes, by `clear()`
 * from the primary or (`--drop del`) by the workers deleting every key they
 * wrote (DEL of 1,000 keys at a time; with `--keep N` every Nth key
 * stays); then, from the moment the data is
 * gone, the primary samples the resident memory of the process holding the
 * store once a second for `seconds` s. With `--target broker` (the default) that is this
 * primary, which hosts the embedded broker; with `--target redis` a
 * redis-server it starts, which the workers fill through cluster-shm's Redis
 * backend, for comparison. The broker's resident memory is what INFO
 * reports as used_memory_rss: its process's own pages plus the store's
 * resident pages, which the workers' writes touch without ever entering the
 * primary's page tables (so its VmRSS alone would miss them). Prints one line
 * per sample and a summary (as JSON into FILE with `--json`).
 * bench/results/memory-return.md holds its results.
 */

const cluster = require('node:cluster');
const fs = require('node:fs');

const WORKERS = 2;
const BATCH = 1_000;
/** Batches each worker keeps in flight. */
const DEPTH = 4;

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const KEYS = Number(flag('keys', 5_000_000));
const VALUE_BYTES = Number(flag('value-bytes', 100));
const SECONDS = Number(flag('seconds', 30));
const DROP = flag('drop', 'clear');
/** With --drop del: every KEEP-th key is not deleted (0: none stays). */
const KEEP = Number(flag('keep', 0));
const TARGET = flag('target', 'broker');
const JSON_FILE = flag('json', null);

/** Resident memory of a process in bytes (VmRSS). */
function rssOf(pid) {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match[1]) * 1024;
}

/** Resident memory of what holds the data: redis-server's VmRSS, or the broker's INFO used_memory_rss. */
async function residentOf(shm, pid) {
  return TARGET === 'redis' ? rssOf(pid) : (await shm.stats()).residentMemory;
}

const MiB = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function primary() {
  if (!['broker', 'redis'].includes(TARGET)) throw new Error('--target is broker or redis');
  if (!['clear', 'del'].includes(DROP)) throw new Error('--drop is clear or del');
  let pid = process.pid;
  let stopRedis = async () => {};
  if (TARGET === 'redis') {
    const { makeTempDir } = require('./lib/proc');
    const { startRedis } = require('./lib/redis-server');
    const redis = await startRedis(makeTempDir());
    pid = redis.pid;
    stopRedis = redis.stop;
    process.env.CLUSTER_SHM_URL = `unix://${redis.socket}`;
  }
  const shm = require('..');
  await shm.clear();
  const before = await residentOf(shm, pid);
  const started = Date.now();
  let peak = before;
  const watchPeak = setInterval(async () => {
    peak = Math.max(peak, await residentOf(shm, pid));
  }, 100);

  const perWorker = Math.ceil(KEYS / WORKERS);
  const workers = [];
  // Resolves once every worker has sent `what`.
  const allSent = (what) =>
    Promise.all(workers.map((worker) => new Promise((resolve) => worker.on('message', (m) => m[what] && resolve()))));
  for (let w = 0; w < WORKERS; w++) {
    const worker = cluster.fork({ MEMORY_RETURN_FROM: w * perWorker, MEMORY_RETURN_TO: Math.min(KEYS, (w + 1) * perWorker) });
    worker.on('exit', (code) => {
      if (code === 0) return;
      console.error(`a worker exited with ${code}`);
      process.exit(1);
    });
    workers.push(worker);
  }
  await allSent('filled');
  const fillSeconds = (Date.now() - started) / 1000;
  const stats = await shm.stats();
  clearInterval(watchPeak);
  const filled = await residentOf(shm, pid);
  peak = Math.max(peak, filled);

  const clearedAt = Date.now();
  if (DROP === 'clear') {
    await shm.clear();
  } else {
    const deleted = allSent('deleted');
    for (const worker of workers) worker.send('delete');
    await deleted;
  }
  // Seconds count from here: a mass DEL (or a clear() through SCAN on Redis)
  // takes a while, and what matters is how long the memory stays after it.
  const droppedAt = Date.now();
  const clearMs = droppedAt - clearedAt;
  for (const worker of workers) worker.disconnect();
  const { keys: left, usedMemory: leftMemory } = await shm.stats();
  console.log(
    `${TARGET}: ${stats.keys} keys (store ${MiB(stats.usedMemory)}) in ${fillSeconds.toFixed(1)} s; RSS before ${MiB(before)}, filled ${MiB(filled)}, peak ${MiB(peak)}; ${DROP} took ${clearMs} ms, ${left} keys left (store ${MiB(leftMemory)})`,
  );
  const samples = [];
  for (let second = 1; second <= SECONDS; second++) {
    await sleep(droppedAt + second * 1000 - Date.now());
    samples.push(await residentOf(shm, pid));
    console.log(`  +${String(second).padStart(2)} s  RSS ${MiB(samples.at(-1))}`);
  }
  const after = samples.at(-1);
  const backWithin = samples.findIndex((rss) => rss - before <= (peak - before) * 0.05);
  const summary = {
    target: TARGET,
    drop: DROP,
    keep: KEEP,
    left,
    leftMemory,
    keys: stats.keys,
    valueBytes: VALUE_BYTES,
    usedMemory: stats.usedMemory,
    fillSeconds,
    before,
    filled,
    peak,
    clearMs,
    samples,
    after,
    kept: after - before,
    // The first second after the drop at which 95 % of what the fill took was back, or null.
    secondsTo95: backWithin < 0 ? null : backWithin + 1,
  };
  console.log(`  kept after ${SECONDS} s: ${MiB(summary.kept)} of the ${MiB(peak - before)} the fill took; 95 % back after ${summary.secondsTo95 ?? 'never'} s`);
  if (JSON_FILE) fs.writeFileSync(JSON_FILE, `${JSON.stringify(summary)}\n`);
  await shm.close();
  await stopRedis();
}

async function worker() {
  const shm = require('..');
  const from = Number(process.env.MEMORY_RETURN_FROM);
  const to = Number(process.env.MEMORY_RETURN_TO);
  // A JSON string of VALUE_BYTES bytes: the quotes and VALUE_BYTES - 2 characters.
  const value = 'v'.repeat(VALUE_BYTES - 2);
  // Runs `call` on each batch of key numbers, DEPTH batches at a time.
  const batches = async (call) => {
    let next = from;
    await Promise.all(
      Array.from({ length: DEPTH }, async () => {
        while (next < to) {
          const start = next;
          next = Math.min(to, next + BATCH);
          await call(Array.from({ length: next - start }, (_, i) => `mr:${start + i}`));
        }
      }),
    );
  };
  await batches((keys) => shm.mset(keys.map((key) => [key, value])));
  process.send({ filled: true });
  process.on('message', async (message) => {
    if (message !== 'delete') return;
    const gone = (key) => !(KEEP > 0 && Number(key.slice(3)) % KEEP === 0);
    await batches((keys) => shm.command('DEL', ...keys.filter(gone)));
    process.send({ deleted: true });
  });
  process.on('disconnect', () => process.exit(0));
}

(cluster.isPrimary ? primary() : worker()).catch((error) => {
  console.error(error);
  process.exit(1);
});

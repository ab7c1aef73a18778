'use strict';

/**
 * Soak test: `npm run soak -- --seconds N [--workers 4] [--in-flight 256]`.
 *
 * Workers keep `in-flight` requests going for N seconds: each writes a known
 * sequence of keys, increments shared and own counters, and reads the other
 * workers' keys, checking every value it reads is whole. At the end the
 * primary checks that no acknowledged write is missing or torn, that the
 * counters are exact, and that the broker's memory and file descriptors are
 * back to their baseline once the data is cleared and the workers are gone:
 * the store's accounting exactly, and the resident memory of the broker's
 * process (sampled every 250 ms for its peak) within RSS_KEPT_BOUND of where
 * it started within RSS_WAIT_MS. Exits non-zero on any violation.
 */

const cluster = require('node:cluster');
const crypto = require('node:crypto');
const fs = require('node:fs');
const shm = require('..');

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const SECONDS = flag('seconds', 10);
const WORKERS = flag('workers', 4);
const IN_FLIGHT = flag('in-flight', 256);

/**
 * Resident memory the broker's process may keep after the data is gone,
 * beyond the growth of this script's own JS heap (which held every
 * acknowledged write's number and checked every value). redis-server 7.0
 * keeps 21-25 MiB after FLUSHALL of 1 GiB of small keys
 * (bench/results/memory-return.md); this process is also the soak's Node
 * process, whose own allocations kept 31-41 MiB more in 60 s soaks. Before
 * the broker returned memory, it kept 1.7 GiB.
 */
const RSS_KEPT_BOUND = 64 * 1024 * 1024;
/** How long the memory has to come back after clear(). */
const RSS_WAIT_MS = 10_000;

/** A value that proves its own integrity: its fields and a digest of them. */
function record(id, n) {
  const body = `${id}:${n}:${'x'.repeat(n % 200)}`;
  return { id, n, body, digest: crypto.createHash('sha1').update(body).digest('hex') };
}

function whole(value, id, n) {
  return (
    value !== null &&
    typeof value === 'object' &&
    value.id === id &&
    value.n === n &&
    value.body === `${id}:${n}:${'x'.repeat(n % 200)}` &&
    value.digest === crypto.createHash('sha1').update(value.body).digest('hex')
  );
}

/**
 * Open sockets of this process: the broker's listener and connections (and
 * the cluster's IPC channels while workers live). Other descriptors belong
 * to Node itself (it keeps /dev/null open after the first fork).
 */
function openSockets() {
  let sockets = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:')) sockets++;
    } catch {
      // The directory's own descriptor, already closed.
    }
  }
  return sockets;
}

async function primary() {
  await shm.clear();
  const baseline = { ...(await shm.stats()), fds: openSockets(), heap: process.memoryUsage().heapTotal };
  let peakRss = baseline.residentMemory;
  const samplePeak = setInterval(() => {
    shm.stats().then((s) => (peakRss = Math.max(peakRss, s.residentMemory)), () => {});
  }, 250);
  const started = Date.now();
  const reports = await new Promise((resolve, reject) => {
    const results = [];
    for (let i = 0; i < WORKERS; i++) {
      const worker = cluster.fork();
      worker.on('message', (m) => {
        results.push(m);
        if (results.length === WORKERS) resolve(results);
      });
      worker.on('exit', (code) => code !== 0 && reject(new Error(`worker ${worker.id} exited with ${code}`)));
    }
  });
  const elapsed = (Date.now() - started) / 1000;
  const problems = [];

  // Every acknowledged write is there and whole.
  let checked = 0;
  for (const report of reports) {
    if (report.failures) problems.push(`worker ${report.id}: ${report.failures} calls failed (${report.firstFailure})`);
    if (report.torn) problems.push(`worker ${report.id} read ${report.torn} torn or wrong values`);
    for (let from = 0; from < report.written.length; from += 1000) {
      const ns = report.written.slice(from, from + 1000);
      const values = await shm.mget(ns.map((n) => `soak:${report.id}:${n}`));
      values.forEach((value, i) => {
        checked++;
        if (!whole(value, report.id, ns[i])) problems.push(`soak:${report.id}:${ns[i]} acknowledged but ${value === undefined ? 'missing' : 'wrong'}`);
      });
    }
    const own = await shm.get(`soak:counter:${report.id}`);
    if (own !== report.increments) problems.push(`worker ${report.id}'s counter is ${own}, expected ${report.increments}`);
  }
  const total = reports.reduce((sum, r) => sum + r.increments, 0);
  const shared = await shm.get('soak:counter');
  if (shared !== total) problems.push(`shared counter is ${shared}, expected ${total}`);
  const operations = reports.reduce((sum, r) => sum + r.operations, 0);
  const torn = reports.reduce((sum, r) => sum + r.torn, 0);
  const failures = reports.reduce((sum, r) => sum + r.failures, 0);
  // The workers' lists of written keys are checked: let them go, so this
  // process's heap does not count as memory the broker kept.
  reports.length = 0;
  const peak = await shm.stats();
  clearInterval(samplePeak);
  peakRss = Math.max(peakRss, peak.residentMemory);

  // Back to baseline once the data is gone and the workers have left.
  for (const worker of Object.values(cluster.workers)) worker.disconnect();
  await new Promise((resolve) => {
    const check = () => (Object.keys(cluster.workers).length === 0 ? resolve() : setTimeout(check, 20));
    check();
  });
  await shm.clear();
  const cleared = Date.now();
  let after;
  for (let waited = 0; waited < 5000; waited += 50) {
    after = { ...(await shm.stats()), fds: openSockets() };
    if (after.connectedClients === 0 && after.fds <= baseline.fds) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const kept = () => after.residentMemory - baseline.residentMemory - (process.memoryUsage().heapTotal - baseline.heap);
  while (kept() > RSS_KEPT_BOUND && Date.now() - cleared < RSS_WAIT_MS) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    after.residentMemory = (await shm.stats()).residentMemory;
  }
  const heapGrowth = process.memoryUsage().heapTotal - baseline.heap;
  const keptRss = kept();
  if (after.usedMemory !== baseline.usedMemory) problems.push(`store memory ${after.usedMemory} bytes, baseline ${baseline.usedMemory}`);
  if (keptRss > RSS_KEPT_BOUND) {
    problems.push(`the broker process kept ${keptRss} bytes of resident memory (beyond the JS heap's growth) ${RSS_WAIT_MS / 1000} s after clear(), bound ${RSS_KEPT_BOUND}`);
  }
  if (after.fds > baseline.fds) problems.push(`${after.fds} open sockets, baseline ${baseline.fds}`);
  if (after.connectedClients !== 0) problems.push(`${after.connectedClients} clients still connected`);

  console.log(`soak: ${WORKERS} workers × ${IN_FLIGHT} in flight for ${elapsed.toFixed(1)} s`);
  console.log(`  operations ${operations} (${Math.round(operations / elapsed)} ops/s)`);
  console.log(`  acknowledged writes checked ${checked}, increments ${total} (shared counter ${shared})`);
  console.log(`  torn reads ${torn}, failed calls ${failures}`);
  console.log(`  store memory: baseline ${baseline.usedMemory} B, peak ${peak.peakMemory} B, after ${after.usedMemory} B`);
  console.log(
    `  broker process RSS: baseline ${baseline.residentMemory} B, peak ${peakRss} B, after ${after.residentMemory} B; kept ${keptRss} B beyond this script's JS heap growth of ${heapGrowth} B (bound ${RSS_KEPT_BOUND} B)`,
  );
  console.log(`  open sockets: baseline ${baseline.fds}, after ${after.fds}; connected clients after ${after.connectedClients}`);
  if (problems.length) {
    console.log(`FAILED: ${problems.length} problems`);
    for (const problem of problems.slice(0, 20)) console.log(`  - ${problem}`);
    process.exitCode = 1;
  } else {
    console.log('soak: OK, nothing lost, torn or leaked');
  }
}

async function worker() {
  const id = cluster.worker.id;
  const deadline = Date.now() + SECONDS * 1000;
  const written = [];
  let next = 0;
  let increments = 0;
  let operations = 0;
  let torn = 0;
  let failures = 0;
  let firstFailure;
  const guard = async (call) => {
    try {
      operations++;
      return await call();
    } catch (error) {
      failures++;
      firstFailure = firstFailure || `${error.code}: ${error.message}`;
      return undefined;
    }
  };
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (Date.now() < deadline) {
        const n = next++;
        if ((await guard(() => shm.set(`soak:${id}:${n}`, record(id, n)).then(() => true))) === true) written.push(n);
        const counted = await guard(() => shm.incr('soak:counter'));
        if (counted !== undefined && (await guard(() => shm.incr(`soak:counter:${id}`))) !== undefined) increments++;
        // Read someone else's key: it is either not written yet or whole.
        const other = ((id + n) % WORKERS) + 1;
        const m = Math.floor(Math.random() * Math.max(1, n));
        const value = await guard(() => shm.get(`soak:${other}:${m}`));
        if (value !== undefined && !whole(value, other, m)) torn++;
      }
    }),
  );
  written.sort((a, b) => a - b);
  process.send({ id, written, increments, operations, torn, failures, firstFailure });
}

(cluster.isPrimary ? primary() : worker()).catch((error) => {
  console.error(error);
  process.exit(1);
});

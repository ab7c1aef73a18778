#!/usr/bin/env node
'use strict';

/**
 * Where the time of a worker's call goes, layer by layer:
 * `node bench/profile.js [--seconds 3] [--repeat 3] [--workers 2] [--depths 1,64] [--no-perf] [--json file]`.
 *
 * This process is the cluster primary: it requires cluster-shm (so it hosts
 * the broker), pre-fills 10,000 keys with 100-byte JSON values and forks the
 * workers, then measures
 *   (a) lib/codec.js encode + decode per value (a loop, here),
 *   (b) lib/resp.js encodeCommand + ReplyParser per call (a loop, here),
 *   (c) the round trip through the real broker from the workers: shm.get /
 *       shm.set 50/50 ("shm"), and the same commands pre-encoded on a bare
 *       net.Socket with a minimal reply scanner ("raw": the floor for a JS
 *       client on this socket), with each process's CPU time, run-queue wait
 *       and context switches per op from /proc,
 *   (d) the broker's own time per command: CPU time of its threads per op
 *       during (c), and redis-benchmark against its socket (and against a
 *       redis-server it starts, for reference),
 *   (e) a V8 CPU profile of each worker (inspector module) during the shm
 *       load, summarised per layer; and, where `perf` works (unless
 *       --no-perf), perf record / perf stat of the broker threads and the
 *       workers, and strace -c counts of their syscalls per op.
 * It prints Markdown tables (bench/results/profile.md was written from them).
 *
 * Everything it starts (workers, redis-server, perf, strace, the broker's
 * socket and temp dirs) is stopped and removed before it exits, on failure and on
 * SIGINT/SIGTERM too.
 */

const cluster = require('node:cluster');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');

const { makeKeys, makeValuePool } = require('./lib/workload');
const codec = require('../lib/codec');
const { encodeCommand, wireChunks, ReplyParser } = require('../lib/resp');
const { FloorClient } = require('./lib/socket-floor');
const { workerMessage } = require('./lib/worker-message');

const WORKLOAD = { name: 'json', keys: 10_000, valueBytes: 100 };
const now = process.hrtime.bigint;

function parseArgs(argv) {
  const options = { seconds: 3, repeat: 3, workers: 2, depths: [1, 64], perf: true, json: null, warmupMs: 700, profileIntervalUs: 500 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === '--seconds') options.seconds = Number(value());
    else if (arg === '--repeat') options.repeat = Number(value());
    else if (arg === '--workers') options.workers = Number(value());
    else if (arg === '--depths') options.depths = value().split(',').map(Number);
    else if (arg === '--no-perf') options.perf = false;
    else if (arg === '--json') options.json = value();
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node bench/profile.js [--seconds 3] [--repeat 3] [--workers 2] [--depths 1,64] [--no-perf] [--json file]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  return options;
}

// ---------------------------------------------------------------------------
// /proc accounting

const CLOCK_TICK_NS = 1e9 / 100; // USER_HZ is 100 on Linux x86-64

function readFile(file) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Per-thread counters of a process: { tid: { name, runNs, waitNs, slices, voluntary, involuntary } }. */
function threadStats(pid) {
  const threads = {};
  let tids = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return threads;
  }
  for (const tid of tids) {
    const sched = readFile(`/proc/${pid}/task/${tid}/schedstat`);
    const status = readFile(`/proc/${pid}/task/${tid}/status`);
    const stat = readFile(`/proc/${pid}/task/${tid}/stat`);
    if (!sched || !status || !stat) continue;
    const [runNs, waitNs, slices] = sched.trim().split(/\s+/).map(Number);
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    threads[tid] = {
      name: (/^Name:\s*(.*)$/m.exec(status) || [])[1] || '?',
      runNs,
      waitNs,
      slices,
      userNs: Number(fields[11]) * CLOCK_TICK_NS,
      sysNs: Number(fields[12]) * CLOCK_TICK_NS,
      voluntary: Number((/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status) || [])[1] || 0),
      involuntary: Number((/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(status) || [])[1] || 0),
    };
  }
  return threads;
}

/** Differences of two threadStats snapshots, summed per thread-name group. */
function threadDelta(before, after, group) {
  const sums = {};
  for (const [tid, a] of Object.entries(after)) {
    const b = before[tid] || { runNs: 0, waitNs: 0, slices: 0, userNs: 0, sysNs: 0, voluntary: 0, involuntary: 0 };
    const key = group(a.name, tid);
    const s = (sums[key] ??= { threads: 0, runNs: 0, waitNs: 0, slices: 0, userNs: 0, sysNs: 0, voluntary: 0, involuntary: 0 });
    s.threads++;
    for (const field of ['runNs', 'waitNs', 'slices', 'userNs', 'sysNs', 'voluntary', 'involuntary']) s[field] += a[field] - b[field];
  }
  return sums;
}

/** Machine-wide CPU jiffies: { busy, total }. */
function machineCpu() {
  const line = (readFile('/proc/stat') || '').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = (line[3] || 0) + (line[4] || 0);
  const total = line.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

// ---------------------------------------------------------------------------
// Micro-benchmarks (a) and (b)

let sink = 0;

/** Median ns per call of `fn` over `rounds` rounds of `n` calls, after a warm-up round. */
function timeLoop(fn, n, rounds = 7) {
  for (let i = 0; i < n; i++) sink ^= fn(i) ? 1 : 0;
  const perOp = [];
  for (let r = 0; r < rounds; r++) {
    const start = now();
    for (let i = 0; i < n; i++) sink ^= fn(i) ? 1 : 0;
    perOp.push(Number(now() - start) / n);
  }
  perOp.sort((a, b) => a - b);
  return perOp[rounds >> 1];
}

function microBenchmarks() {
  const keys = makeKeys(WORKLOAD.keys);
  const pool = makeValuePool(WORKLOAD);
  const encoded = pool.map((v) => codec.encode(v, 'json'));
  // A GET reply's value as the ReplyParser hands it over: a Buffer copy.
  const stored = encoded.map((text) => Buffer.from(text));
  const N = 200_000;
  const m = {};
  m.codecEncode = timeLoop((i) => codec.encode(pool[i & 63], 'json'), N);
  m.codecDecode = timeLoop((i) => codec.decode(stored[i & 63]), N);
  m.codecPerOp = (m.codecEncode + m.codecDecode) / 2; // 50/50 set/get
  m.jsonStringify = timeLoop((i) => JSON.stringify(pool[i & 63]), N);
  m.jsonParse = timeLoop((i) => JSON.parse(encoded[i & 63]), N);

  m.encodeSet = timeLoop((i) => encodeCommand(['SET', keys[i % keys.length], encoded[i & 63]]), N);
  m.encodeGet = timeLoop((i) => encodeCommand(['GET', keys[i % keys.length]]), N);
  const okReply = Buffer.from('+OK\r\n');
  const bulkReply = Buffer.concat([Buffer.from(`$${stored[0].length}\r\n`), stored[0], Buffer.from('\r\n')]);
  const parser = new ReplyParser();
  m.parseOk = timeLoop(() => parser.push(okReply).length, N);
  m.parseBulk = timeLoop(() => parser.push(bulkReply).length, N);
  // 64 replies arriving in one chunk (64 in flight): per reply.
  const chunk64 = Buffer.concat(Array.from({ length: 64 }, (_, i) => (i % 2 ? bulkReply : okReply)));
  m.parseChunk64PerReply = timeLoop(() => parser.push(chunk64).length, N / 64) / 64;
  // The write path at 64 in flight joins the payloads of a tick: per call.
  const payloads = Array.from({ length: 64 }, (_, i) =>
    i % 2 ? encodeCommand(['GET', keys[i]]) : encodeCommand(['SET', keys[i], encoded[i & 63]]),
  );
  m.concat64PerCall = timeLoop(() => wireChunks(payloads).length, N / 64) / 64;
  m.clientPerOp1 = (m.encodeSet + m.encodeGet) / 2 + (m.parseOk + m.parseBulk) / 2;
  m.clientPerOp64 = (m.encodeSet + m.encodeGet) / 2 + m.parseChunk64PerReply + m.concat64PerCall;
  // At 1 in flight every call arms and disarms the timeout check
  // (Connection#watchTimeouts): one setInterval + clearInterval.
  const noop = () => {};
  m.intervalArmDisarm = timeLoop(() => {
    clearInterval(setInterval(noop, 100));
    return true;
  }, N / 4);
  // Candidates, for comparison with the current paths above:
  // the GET path today: the parser copies the bulk, decode() turns it into text and parses it.
  m.parseBulkThenDecode = timeLoop(() => codec.decode(parser.push(bulkReply)[0]), N);
  // ... against parsing the JSON text straight from the read buffer.
  const bodyStart = bulkReply.indexOf('\r\n') + 2;
  m.jsonParseFromReadBuffer = timeLoop(() => JSON.parse(bulkReply.toString('utf8', bodyStart, bulkReply.length - 2)), N);
  return m;
}

// ---------------------------------------------------------------------------
// The worker side

function workerMain() {
  const shm = require('..');
  const keys = makeKeys(WORKLOAD.keys);
  const pool = makeValuePool(WORKLOAD);
  let raw = null;

  process.on('disconnect', () => process.exit(0));

  process.on('message', (message) => {
    if (!message || message.profile === undefined) return;
    if (message.profile === 'run') {
      runPhase(message).then(
        (result) => process.send({ profile: 'result', result }),
        (error) => process.send({ profile: 'error', error: String(error && error.stack ? error.stack : error) }),
      );
    } else if (message.profile === 'exit') {
      if (raw) raw.close();
      Promise.resolve(shm.close()).finally(() => process.exit(0));
    }
  });
  process.send({ profile: 'ready' });

  async function runPhase({ mode, depth, start, end, profileIntervalUs }) {
    const client = mode === 'raw' ? (raw ??= await RawClient.connect(keys, pool)) : shmClient(shm, keys, pool);
    const measureStart = BigInt(start);
    const measureEnd = BigInt(end);
    let ops = 0;
    let latencyNs = 0;
    let snapshot = null;
    let profiler = null;

    const startTimer = setTimeout(async () => {
      if (profileIntervalUs) profiler = await startProfiler(profileIntervalUs);
      snapshot = { t: now(), ops, latencyNs, cpu: process.cpuUsage(), threads: threadStats(process.pid) };
    }, Math.max(0, Number(measureStart - now()) / 1e6));

    const lane = async () => {
      while (now() < measureEnd) {
        const i = (Math.random() * keys.length) | 0;
        const t0 = now();
        if (Math.random() < 0.5) await client.get(i);
        else await client.set(i, (Math.random() * pool.length) | 0);
        latencyNs += Number(now() - t0);
        ops++;
      }
    };
    const lanes = Promise.all(Array.from({ length: depth }, lane));
    const result = await new Promise((resolve) => {
      setTimeout(async () => {
        const t = now();
        const cpu = process.cpuUsage(snapshot.cpu);
        const threads = threadDelta(snapshot.threads, threadStats(process.pid), (name, tid) => (String(tid) === String(process.pid) ? 'main' : 'other'));
        const measured = { ops: ops - snapshot.ops, latencyNs: latencyNs - snapshot.latencyNs, windowNs: Number(t - snapshot.t), cpu, threads };
        if (profiler) measured.profile = summariseProfile(await profiler.stop());
        resolve(measured);
      }, Math.max(0, Number(measureEnd - now()) / 1e6));
    });
    clearTimeout(startTimer);
    await lanes;
    return { pid: process.pid, ...result };
  }
}

/** The API calls the benchmark makes: shm.get / shm.set by key index. */
function shmClient(shm, keys, pool) {
  return {
    get: (i) => shm.get(keys[i]),
    set: (i, v) => shm.set(keys[i], pool[v]),
  };
}

/**
 * The same commands, pre-encoded, on the socket floor's bare client: no
 * codec, no encoding. The floor for a JS client on this socket.
 */
class RawClient {
  static async connect(keys, pool) {
    return new RawClient(await FloorClient.connect(), keys, pool);
  }

  constructor(floor, keys, pool) {
    this.floor = floor;
    this.gets = keys.map((k) => encodeCommand(['GET', k]));
    this.sets = keys.map((k, i) => encodeCommand(['SET', k, JSON.stringify(pool[i % pool.length])]));
  }

  get(i) {
    return this.floor.call(this.gets[i]);
  }

  set(i) {
    // The value is fixed per key: no encoding at all on this path.
    return this.floor.call(this.sets[i]);
  }

  close() {
    this.floor.close();
  }
}

// ---------------------------------------------------------------------------
// V8 CPU profile of a worker, grouped per layer

async function startProfiler(intervalUs) {
  const inspector = require('node:inspector');
  const session = new inspector.Session();
  session.connect();
  const post = (method, params = {}) =>
    new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: intervalUs });
  await post('Profiler.start');
  return {
    async stop() {
      const { profile } = await post('Profiler.stop');
      await post('Profiler.disable');
      session.disconnect();
      return profile;
    },
  };
}

const REPO = path.join(__dirname, '..');

/** The layer a frame owns, or null for frames that only do work for their caller (Buffer, V8 builtins, events). */
function frameLayer(frame) {
  const { url, functionName } = frame;
  if (url === '' || url === undefined) {
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(garbage collector)') return 'gc';
    if (functionName === '(program)') return 'program';
    if (functionName === '(root)') return 'root';
    return null; // a V8 builtin or a C++ binding: its caller decides
  }
  const file = url.startsWith('file://') ? url.slice(7) : url;
  if (file.endsWith('/lib/codec.js')) return 'codec';
  if (file.endsWith('/lib/connection.js') || file.endsWith('/lib/resp.js')) return 'client';
  if (file.startsWith(REPO) && (file.includes('/lib/') || file.endsWith('/index.js'))) return 'api';
  if (file.startsWith(path.join(REPO, 'bench'))) return 'load';
  if (
    file === 'node:net' ||
    file === 'node:stream' ||
    file.startsWith('node:internal/stream_base_commons') ||
    file.startsWith('node:internal/streams/') ||
    file === 'node:internal/net'
  ) {
    return 'socket';
  }
  if (file.startsWith('node:internal/timers') || file === 'node:timers') return 'timers';
  if (file === 'node:internal/process/task_queues') return null; // runs microtasks on behalf of whoever queued them
  if (file === 'node:events' || file === 'node:buffer' || file.startsWith('node:internal/buffer')) return null;
  if (file.startsWith('node:')) return 'node-other';
  return 'other';
}

/**
 * Self time per function, and time per layer: a sample counts for the
 * nearest frame on its stack (leaf first) that owns a layer, so JSON.parse
 * under decode() counts as codec and writev under Socket._writeGeneric as
 * socket.
 */
function summariseProfile(profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children || []) parent.set(child, node.id);
  const layerOf = new Map();
  const resolveLayer = (id) => {
    if (layerOf.has(id)) return layerOf.get(id);
    const own = frameLayer(byId.get(id).callFrame);
    let layer = own && own !== 'root' ? own : null;
    if (layer === null) {
      const up = parent.get(id);
      layer = up === undefined || own === 'root' ? 'v8-native' : resolveLayer(up);
      if (layer === 'root') layer = 'v8-native';
    }
    layerOf.set(id, layer);
    return layer;
  };
  const layers = {};
  const self = new Map();
  let total = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    // A sample stands for the time until the next one.
    const dt = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0;
    if (dt <= 0) continue;
    total += dt;
    const layer = resolveLayer(samples[i]);
    layers[layer] = (layers[layer] || 0) + dt;
    const frame = byId.get(samples[i]).callFrame;
    const name = `${frame.functionName || '(anonymous)'} ${frame.url ? `${frame.url.replace(`file://${REPO}/`, '')}:${frame.lineNumber + 1}` : '[native]'}`;
    const entry = self.get(name) || { name, layer, us: 0 };
    entry.us += dt;
    self.set(name, entry);
  }
  const top = [...self.values()].sort((a, b) => b.us - a.us).slice(0, 25);
  return { totalUs: total, layers, top };
}

// ---------------------------------------------------------------------------
// The primary side

const children = new Set();
let tempDir = null;

function cleanUp() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const worker of Object.values(cluster.workers || {})) {
    try {
      worker.process.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  if (tempDir) {
    fs.rmSync(tempDir, { recursive: true, force: true });
    tempDir = null;
  }
}

function which(program) {
  const out = spawnSync('sh', ['-c', `command -v ${program}`], { encoding: 'utf8' });
  return out.status === 0 ? out.stdout.trim() : null;
}

function run(file, args, { timeoutMs = 120_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
    child.on('error', (error) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code: -1, stdout, stderr: String(error) });
    });
  });
}

/** One measured phase: every worker runs `mode` at `depth`; the primary accounts its broker threads meanwhile. */
async function phase(workers, options, mode, depth, { profile = false, during = null } = {}) {
  const start = now() + 150_000_000n + BigInt(options.warmupMs) * 1_000_000n;
  const end = start + BigInt(Math.round(options.seconds * 1e9));
  const results = workers.map((w) => workerMessage(w, 'profile', 'result'));
  for (const w of workers) {
    w.send({ profile: 'run', mode, depth, start: String(start), end: String(end), profileIntervalUs: profile ? options.profileIntervalUs : 0 });
  }
  // A tool watching the processes (perf, strace) covers the warm-up too, so
  // that the measured window lies inside its own, at the same (slowed) pace.
  const sideJob = during ? during(Number(end - now()) / 1e9 - 0.05) : null;
  await sleepUntil(start);
  const t0 = now();
  const before = { threads: threadStats(process.pid), machine: machineCpu(), loadavg: os.loadavg()[0] };
  await sleepUntil(end);
  const t1 = now();
  const after = { threads: threadStats(process.pid), machine: machineCpu() };
  const perWorker = (await Promise.all(results)).map((m) => m.result);
  const sideResult = sideJob ? await sideJob : null;
  const primaryThreads = threadDelta(before.threads, after.threads, (name, tid) =>
    String(tid) === String(process.pid) ? 'primary-js' : name.startsWith('cluster-shm') ? 'broker' : 'primary-other',
  );
  const machine = {
    busyShare: (after.machine.busy - before.machine.busy) / Math.max(1, after.machine.total - before.machine.total),
    loadavg1: before.loadavg,
  };
  return summarisePhase({ mode, depth, windowNs: Number(t1 - t0), perWorker, primaryThreads, machine, side: sideResult });
}

function sleepUntil(t) {
  const ms = Number(t - now()) / 1e6;
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}

function summarisePhase({ mode, depth, windowNs, perWorker, primaryThreads, machine, side }) {
  const ops = perWorker.reduce((a, w) => a + w.ops, 0);
  const us = (ns) => ns / 1e3;
  const workerOpsAvg = ops / perWorker.length;
  const workerWindowAvg = perWorker.reduce((a, w) => a + w.windowNs, 0) / perWorker.length;
  const sum = (get) => perWorker.reduce((a, w) => a + get(w), 0);
  const broker = primaryThreads.broker || { runNs: 0, waitNs: 0, voluntary: 0, involuntary: 0, slices: 0, threads: 0 };
  const out = {
    mode,
    depth,
    ops,
    opsPerSec: ops / (windowNs / 1e9),
    opsPerSecPerWorker: perWorker.map((w) => w.ops / (w.windowNs / 1e9)),
    // Wall time of a worker per op: the round trip at depth 1, the amortised cost per op at depth 64.
    workerWallPerOpUs: us(workerWindowAvg / workerOpsAvg),
    meanLatencyUs: us(sum((w) => w.latencyNs) / ops),
    workerCpuPerOpUs: us(sum((w) => (w.cpu.user + w.cpu.system) * 1e3) / ops),
    workerUserPerOpUs: us(sum((w) => w.cpu.user * 1e3) / ops),
    workerSysPerOpUs: us(sum((w) => w.cpu.system * 1e3) / ops),
    workerMainRunPerOpUs: us(sum((w) => w.threads.main.runNs) / ops),
    workerMainRunqWaitPerOpUs: us(sum((w) => w.threads.main.waitNs) / ops),
    workerMainSwitchesPerOp: sum((w) => w.threads.main.voluntary + w.threads.main.involuntary) / ops,
    workerOtherThreadsRunPerOpUs: us(sum((w) => (w.threads.other ? w.threads.other.runNs : 0)) / ops),
    brokerRunPerOpUs: us(broker.runNs / ops),
    brokerRunqWaitPerOpUs: us(broker.waitNs / ops),
    brokerSwitchesPerOp: (broker.voluntary + broker.involuntary) / ops,
    brokerThreads: broker.threads,
    primaryJsRunPerOpUs: us(((primaryThreads['primary-js'] || {}).runNs || 0) / ops),
    machineBusyShare: machine.busyShare,
    loadavg1: machine.loadavg1,
  };
  if (perWorker[0].profile) {
    const layers = {};
    let totalUs = 0;
    for (const w of perWorker) {
      totalUs += w.profile.totalUs;
      for (const [layer, t] of Object.entries(w.profile.layers)) layers[layer] = (layers[layer] || 0) + t;
    }
    const top = new Map();
    for (const w of perWorker) {
      for (const entry of w.profile.top) {
        const e = top.get(entry.name) || { ...entry, us: 0 };
        e.us += entry.us;
        top.set(entry.name, e);
      }
    }
    out.profile = {
      totalUs,
      layerShare: Object.fromEntries(Object.entries(layers).map(([k, v]) => [k, v / totalUs])),
      layerPerOpUs: Object.fromEntries(Object.entries(layers).map(([k, v]) => [k, v / ops])),
      top: [...top.values()].sort((a, b) => b.us - a.us).slice(0, 20).map((e) => ({ ...e, share: e.us / totalUs, perOpUs: e.us / ops })),
    };
  }
  if (side) out.perf = side;
  return out;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

/** The run whose throughput is the median of the repeats. */
function medianRun(runs) {
  const m = median(runs.map((r) => r.opsPerSec));
  return { ...runs.find((r) => r.opsPerSec === m), repeats: runs.map((r) => Math.round(r.opsPerSec)) };
}

// ---------------------------------------------------------------------------
// perf and redis-benchmark

/** Which process and kind of thread each thread id of `pids` is: { tid: label }. */
function threadLabels(pids, labels) {
  const out = {};
  for (const pid of pids) {
    for (const [tid, t] of Object.entries(threadStats(pid))) {
      const who = labels[pid] || String(pid);
      out[tid] = String(tid) === String(pid) ? `${who} JS thread` : t.name.startsWith('cluster-shm') ? `${who} broker threads` : `${who} other threads`;
    }
  }
  return out;
}

/** perf record (cpu-clock) on `pids` for `seconds`: shares per thread kind and DSO, and the top symbols. */
async function perfRecord(pids, tids, seconds) {
  await new Promise((r) => setTimeout(r, 250)); // the load starts
  seconds -= 0.25;
  const file = path.join(tempDir, `perf-${Date.now()}.data`);
  const rec = await run('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '1999', '-p', pids.join(','), '-o', file, '--', 'sleep', seconds.toFixed(2)]);
  if (rec.code !== 0) return { error: `perf record failed: ${rec.stderr.trim().slice(0, 300)}` };
  const report = async (sort, limit) => {
    const args = ['report', '-i', file, '--stdio', '--no-children', '--sort', sort, '-q', '--percent-limit', String(limit)];
    const out = await run('perf', args);
    return out.code === 0 ? out.stdout.split('\n') : [];
  };
  const where = (dso, kind) => (kind === 'k' ? 'kernel' : dso.includes('cluster-shm') ? 'addon (Rust)' : dso === 'node' ? 'node binary (V8, libuv)' : dso.startsWith('[JIT]') || dso === '[unknown]' ? 'JIT code' : dso);
  const groups = {};
  for (const line of await report('pid,dso', 0)) {
    // "    12.34%  1234:cluster-shm-bro  [kernel.kallsyms]"
    const m = /^\s*([\d.]+)%\s+(\d+):\S*\s+(\S+)/.exec(line);
    if (!m) continue;
    const key = `${tids[m[2]] || `tid ${m[2]}`}: ${where(m[3], m[3] === '[kernel.kallsyms]' ? 'k' : '.')}`;
    groups[key] = (groups[key] || 0) + Number(m[1]) / 100;
  }
  const top = [];
  for (const line of await report('pid,dso,sym', 0.3)) {
    const m = /^\s*([\d.]+)%\s+(\d+):\S*\s+(\S+)\s+\[(.)\]\s+(.*)$/.exec(line);
    if (m) top.push({ share: Number(m[1]) / 100, who: tids[m[2]] || `tid ${m[2]}`, dso: m[3], kind: m[4], sym: m[5].trim() });
  }
  // The same symbol on several threads of one kind counts once.
  const merged = new Map();
  for (const row of top) {
    const key = `${row.who}|${row.dso}|${row.sym}`;
    const e = merged.get(key) || { ...row, share: 0 };
    e.share += row.share;
    merged.set(key, e);
  }
  return { groups, top: [...merged.values()].sort((a, b) => b.share - a.share).slice(0, 30) };
}

/** perf stat: syscalls, context switches and wake-ups per thread kind. */
async function perfStat(pids, tids, seconds) {
  await new Promise((r) => setTimeout(r, 250)); // the load starts
  seconds -= 0.25;
  const events = ['raw_syscalls:sys_enter', 'sched:sched_switch', 'sched:sched_wakeup'];
  const out = await run('perf', ['stat', '-x', ',', '--per-thread', '-e', events.join(','), '-p', pids.join(','), '--', 'sleep', seconds.toFixed(2)]);
  if (out.code !== 0) return { error: `perf stat failed: ${out.stderr.trim().slice(0, 300)}` };
  const counts = {};
  for (const line of out.stderr.split('\n')) {
    const cells = line.split(',');
    if (cells.length < 4) continue;
    const tid = (/-(\d+)$/.exec(cells[0]) || [])[1];
    const n = Number(cells[1]);
    if (!tid || !Number.isFinite(n)) continue;
    const who = tids[tid] || `tid ${tid}`;
    const c = (counts[who] ??= {});
    c[cells[3]] = (c[cells[3]] || 0) + n;
  }
  return { counts, seconds };
}

/**
 * strace -c -f on each of `targets` ({ pid, label }) for `seconds`: calls per
 * syscall (all threads of the process). strace slows the traced processes a
 * lot; only the counts per op are used.
 */
async function straceCounts(targets, seconds) {
  await new Promise((r) => setTimeout(r, 250)); // the load starts
  seconds -= 0.25;
  const traced = targets.map(({ pid, label }) => {
    const child = spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let text = '';
    child.stderr.on('data', (d) => (text += d));
    const done = new Promise((resolve) => child.on('close', () => resolve(text)));
    return { label, child, done };
  });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const calls = {};
  for (const t of traced) {
    t.child.kill('SIGINT');
    const text = await t.done;
    children.delete(t.child);
    for (const line of text.split('\n')) {
      // "% time     seconds  usecs/call     calls    errors syscall"
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
      if (m && m[2] !== 'total') (calls[t.label] ??= {})[m[2]] = Number(m[1]);
    }
  }
  if (Object.keys(calls).length === 0) return { error: 'strace gave nothing' };
  return { calls, seconds };
}

function parseBenchmarkCsv(text) {
  const rps = {};
  for (const line of text.split(/\r?\n/)) {
    const cells = line.split(',').map((c) => c.replace(/^"|"$/g, ''));
    if (cells.length >= 2 && cells[0] !== 'test' && Number.isFinite(Number(cells[1]))) rps[cells[0]] = { rps: Number(cells[1]), avgMs: Number(cells[2]) };
  }
  return rps;
}

async function redisBenchmarks(socket, secret, log, repeat) {
  const bin = which('redis-benchmark');
  if (!bin) return { skipped: 'redis-benchmark not installed' };
  const out = [];
  const configs = [
    { c: 1, P: 1, n: 30_000 },
    { c: 2, P: 1, n: 50_000 },
    { c: 2, P: 64, n: 1_000_000 },
  ];
  const servers = [{ name: 'cluster-shm broker', socket, secret }];
  const redisBin = which('redis-server');
  let redis = null;
  if (redisBin) {
    const redisSocket = path.join(tempDir, 'redis.sock');
    redis = spawn(redisBin, ['--port', '0', '--unixsocket', redisSocket, '--save', '', '--appendonly', 'no', '--dir', tempDir], { stdio: 'ignore' });
    children.add(redis);
    for (let i = 0; i < 100 && !fs.existsSync(redisSocket); i++) await new Promise((r) => setTimeout(r, 50));
    if (fs.existsSync(redisSocket)) servers.push({ name: 'redis-server', socket: redisSocket });
  }
  for (const cfg of configs) {
    for (const server of servers) out.push({ server: server.name, ...cfg, runs: [] });
    for (let r = 0; r < repeat; r++) {
      // The servers alternate, so that drifting machine load hits both alike.
      for (const server of servers) {
        const args = ['-s', server.socket, '-t', 'set,get', '-d', '100', '-r', '10000', '-n', String(cfg.n), '-c', String(cfg.c), '-P', String(cfg.P), '--csv'];
        const shown = `redis-benchmark -s <socket>${server.secret ? ' -a <secret>' : ''} ${args.slice(2).join(' ')}`;
        log(`  ${server.name} (${r + 1}/${repeat}): ${shown}`);
        const res = await run(bin, server.secret ? [...args, '-a', server.secret] : args);
        const rps = parseBenchmarkCsv(res.stdout);
        const row = out.find((o) => o.server === server.name && o.c === cfg.c && o.P === cfg.P);
        row.command = shown;
        if (res.code === 0 && rps.GET && rps.SET) row.runs.push({ get: rps.GET.rps, set: rps.SET.rps });
        else row.error = res.stderr.trim().slice(0, 200);
      }
    }
  }
  for (const row of out) {
    if (row.runs.length === 0) continue;
    row.get = median(row.runs.map((x) => x.get));
    row.set = median(row.runs.map((x) => x.set));
  }
  if (redis) {
    redis.kill('SIGTERM');
    await new Promise((r) => (redis.exitCode !== null ? r() : redis.once('exit', r)));
    children.delete(redis);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Report

const f1 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(1));
const f2 = (x) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(2));
const pct = (x) => (x === undefined || Number.isNaN(x) ? '–' : `${(x * 100).toFixed(0)}%`);
const int = (x) => Math.round(x).toLocaleString('en-US');

const LAYER_NAMES = {
  load: 'load generator (bench/profile.js lanes)',
  api: 'API (lib/api.js, options, index.js)',
  codec: 'JS encoding (lib/codec.js: JSON encode/decode)',
  client: 'client (lib/connection.js, lib/resp.js)',
  socket: 'socket: node net/stream + its syscalls',
  timers: 'node timers (lib/connection.js timeout watch)',
  'node-other': 'other node internals',
  'v8-native': 'V8 builtins / microtask queue without a JS owner',
  program: '(program): native outside JS (libuv, epoll, syscalls)',
  gc: 'garbage collector',
  idle: 'idle (waiting for the reply)',
  other: 'other',
};

const MICRO_NAMES = {
  codecEncode: '(a) codec.encode(100-byte JSON object) — every set',
  codecDecode: '(a) codec.decode(Buffer of 100-byte JSON) — every get',
  codecPerOp: '(a) codec per op, 50/50 set/get',
  jsonStringify: '    for comparison: plain JSON.stringify of the same object',
  jsonParse: '    for comparison: plain JSON.parse of the same text',
  encodeSet: '(b) encodeCommand([SET, key, 100-byte JSON])',
  encodeGet: '(b) encodeCommand([GET, key])',
  parseOk: '(b) ReplyParser.push(+OK) alone in a chunk',
  parseBulk: '(b) ReplyParser.push($100 bulk) alone in a chunk',
  parseChunk64PerReply: '(b) ReplyParser.push(64 replies in one chunk), per reply',
  concat64PerCall: '(b) wireChunks of 64 calls written in one tick, per call',
  clientPerOp1: '(b) client encode + parse per op at 1 in flight (50/50)',
  clientPerOp64: '(b) client encode + parse + concat per op at 64 in flight (50/50)',
  intervalArmDisarm: '(b) setInterval + clearInterval (the timeout watch, per call at 1 in flight)',
  parseBulkThenDecode: '    GET path today: parse bulk (copy) + codec.decode',
  jsonParseFromReadBuffer: '    candidate: JSON.parse(readBuffer.toString(utf8, start, end))',
};

function report(result) {
  const lines = [];
  const push = (s = '') => lines.push(s);
  const m = result.micro;
  push(`## Machine\n\n${result.machine.cpus} × ${result.machine.model}, node ${result.machine.node}, ${result.machine.workers} workers, ${result.machine.seconds} s per phase, median of ${result.machine.repeat} repeats; load average at start ${result.machine.loadavg}\n`);
  for (const depth of [...new Set(result.roundTrips.map((r) => r.depth))]) {
    const shm = result.roundTrips.find((r) => r.mode === 'shm' && r.depth === depth);
    const raw = result.roundTrips.find((r) => r.mode === 'raw' && r.depth === depth);
    const prof = result.profiles.find((p) => p.depth === depth);
    if (!shm || !prof) continue;
    const W = shm.workerWallPerOpUs;
    const C = shm.workerMainRunPerOpUs;
    const Q = shm.workerMainRunqWaitPerOpUs;
    const busy = Object.entries(prof.profile.layerShare).filter(([k]) => k !== 'idle');
    const busyTotal = busy.reduce((a, [, v]) => a + v, 0);
    push(`## Per layer, 2 workers × ${depth} in flight: worker wall time per op ${f1(W)} µs (${int(shm.opsPerSec)} ops/s)\n`);
    push('| layer | µs/op | share of the worker\'s time per op |\n| --- | ---: | ---: |');
    for (const [k, v] of busy.sort((a, b) => b[1] - a[1])) push(`| worker JS thread, ${LAYER_NAMES[k] || k} | ${f2((C * v) / busyTotal)} | ${pct((C * v) / busyTotal / W)} |`);
    push(`| worker JS thread on CPU, total | ${f1(C)} | ${pct(C / W)} |`);
    push(`| worker JS thread runnable, waiting for a core | ${f1(Q)} | ${pct(Q / W)} |`);
    push(`| worker JS thread blocked: the reply is on its way (socket + broker + wake-ups) | ${f1(Math.max(0, W - C - Q))} | ${pct(Math.max(0, W - C - Q) / W)} |`);
    push(`| meanwhile: broker threads on CPU (all its work: epoll, read, execute, write, task hand-offs) | ${f1(shm.brokerRunPerOpUs)} | ${pct(shm.brokerRunPerOpUs / W)} |`);
    push(`| meanwhile: broker threads runnable, waiting for a core | ${f1(shm.brokerRunqWaitPerOpUs)} | ${pct(shm.brokerRunqWaitPerOpUs / W)} |`);
    if (raw) push(`| reference: the same commands from a bare net.Socket, no lib/ (worker wall µs/op) | ${f1(raw.workerWallPerOpUs)} | ${pct(raw.workerWallPerOpUs / W)} |`);
    push();
  }
  push('## (a) codec and (b) client encode/parse, per op (median of 7 loops, ns)\n');
  push('| what | ns |\n| --- | ---: |');
  for (const [k, v] of Object.entries(m)) push(`| ${MICRO_NAMES[k] || k} | ${f1(v)} |`);
  push();
  push('## (c) round trip through the broker (per worker; CPU and scheduler time per op from /proc)\n');
  push('| client | in flight | ops/s (all workers) | worker wall µs/op | mean latency µs | worker CPU µs/op (user+sys) | worker main-thread run-queue wait µs/op | worker ctx switches/op | broker CPU µs/op | broker run-queue wait µs/op | broker ctx switches/op | machine busy | repeats ops/s |');
  push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of result.roundTrips) {
    push(
      `| ${r.mode} | ${r.depth} | ${int(r.opsPerSec)} | ${f1(r.workerWallPerOpUs)} | ${f1(r.meanLatencyUs)} | ${f1(r.workerCpuPerOpUs)} (${f1(r.workerUserPerOpUs)}+${f1(r.workerSysPerOpUs)}) | ${f1(r.workerMainRunqWaitPerOpUs)} | ${f2(r.workerMainSwitchesPerOp)} | ${f1(r.brokerRunPerOpUs)} | ${f1(r.brokerRunqWaitPerOpUs)} | ${f2(r.brokerSwitchesPerOp)} | ${pct(r.machineBusyShare)} | ${r.repeats.map(int).join(', ')} |`,
    );
  }
  push();
  for (const p of result.profiles) {
    push(`## (e) V8 CPU profile of the workers, shm at ${p.depth} in flight (${int(p.opsPerSec)} ops/s while profiled)\n`);
    push('| layer | share of worker wall time | µs/op |\n| --- | ---: | ---: |');
    for (const [layer, share] of Object.entries(p.profile.layerShare).sort((a, b) => b[1] - a[1])) {
      push(`| ${LAYER_NAMES[layer] || layer} | ${pct(share)} | ${f2(p.profile.layerPerOpUs[layer])} |`);
    }
    push('\nTop self time:\n\n| function | layer | share | µs/op |\n| --- | --- | ---: | ---: |');
    for (const e of p.profile.top) push(`| \`${e.name}\` | ${e.layer} | ${pct(e.share)} | ${f2(e.perOpUs)} |`);
    push();
  }
  for (const p of result.perf) {
    push(`## perf, shm and raw at ${p.depth} in flight\n`);
    const rec = p.record;
    if (rec.error) push(rec.error);
    else {
      push(`perf record -e cpu-clock (${int(rec.opsPerSec)} ops/s while recorded): share of samples per thread kind and where\n`);
      push('| thread kind: where | share of samples |\n| --- | ---: |');
      for (const [k, v] of Object.entries(rec.groups).sort((a, b) => b[1] - a[1])) if (v >= 0.005) push(`| ${k} | ${pct(v)} |`);
      push('\n| share | thread kind | dso | symbol |\n| ---: | --- | --- | --- |');
      for (const row of rec.top.slice(0, 25)) push(`| ${(row.share * 100).toFixed(1)}% | ${row.who} | ${row.dso} | \`${row.sym.slice(0, 90)}\` |`);
      push();
    }
    push('perf stat, per op (counts per second ÷ ops per second of the same phase; a worker\'s per op of its own, the primary\'s per op of all workers):\n');
    push('| client | thread kind | syscalls/op | context switches/op | wake-ups/op |\n| --- | --- | ---: | ---: | ---: |');
    for (const [mode, st] of Object.entries(p.stats)) {
      if (st.error) {
        push(`| ${mode} | ${st.error} | | | |`);
        continue;
      }
      for (const [who, c] of Object.entries(st.counts).sort()) {
        // A worker's counts per op of its own; the primary's per op of all workers.
        const worker = /^worker(\d+)/.exec(who);
        const opsPerSec = worker ? st.opsPerSecPerWorker[Number(worker[1]) - 1] : st.opsPerSec;
        const per = (name) => (c[name] || 0) / st.seconds / opsPerSec;
        if (per('raw_syscalls:sys_enter') < 0.005 && per('sched:sched_switch') < 0.005) continue;
        push(`| ${mode} | ${who} | ${f2(per('raw_syscalls:sys_enter'))} | ${f2(per('sched:sched_switch'))} | ${f2(per('sched:sched_wakeup'))} |`);
      }
    }
    push();
    if (p.trace.error) push(p.trace.error);
    else {
      push(`strace -c -f (shm, ${int(p.trace.opsPerSec)} ops/s while traced): calls per op by syscall; the broker's per op of all workers, worker1's per op of its own\n`);
      push('| process | syscall | calls/op |\n| --- | --- | ---: |');
      for (const [who, calls] of Object.entries(p.trace.calls)) {
        const opsPerSec = who === 'worker1' ? p.trace.opsPerSecPerWorker[0] : p.trace.opsPerSec;
        for (const [name, n] of Object.entries(calls).sort((a, b) => b[1] - a[1])) {
          const perOp = n / p.trace.seconds / opsPerSec;
          if (perOp >= 0.01) push(`| ${who} | ${name} | ${f2(perOp)} |`);
        }
      }
      push();
    }
  }
  push('## (d) redis-benchmark, 100-byte values, 10,000 random keys\n');
  if (!Array.isArray(result.redisBenchmark)) push(result.redisBenchmark.skipped);
  else {
    push(`median of ${result.machine.repeat} runs each, servers alternating\n`);
    push('| server | clients | pipeline | GET ops/s | SET ops/s | µs per GET round trip (clients × pipeline ÷ ops/s) | GET runs |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const r of result.redisBenchmark) {
      if (!r.get) push(`| ${r.server} | ${r.c} | ${r.P} | error: ${r.error} | | | |`);
      else push(`| ${r.server} | ${r.c} | ${r.P} | ${int(r.get)} | ${int(r.set)} | ${f1((1e6 / r.get) * r.c * r.P)} | ${r.runs.map((x) => int(x.get)).join(', ')} |`);
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------

async function primaryMain() {
  const options = parseArgs(process.argv.slice(2));
  const log = (s) => process.stderr.write(`${s}\n`);
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      cleanUp();
      process.exit(130);
    });
  }
  process.on('exit', cleanUp);
  tempDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cshm-profile-'));

  const machine = {
    cpus: os.cpus().length,
    model: (/^model name\s*:\s*(.+)$/m.exec(readFile('/proc/cpuinfo') || '') || [])[1] || os.cpus()[0].model,
    node: process.version,
    workers: options.workers,
    seconds: options.seconds,
    repeat: options.repeat,
    loadavg: os.loadavg().map((v) => v.toFixed(2)).join(' / '),
  };
  log('micro-benchmarks (a), (b) ...');
  const micro = microBenchmarks();

  const shm = require('..');
  if (shm.role !== 'primary') throw new Error(`cluster-shm role is ${shm.role}; run this as a plain script`);
  log(`broker at ${shm.socket}; pre-filling ${WORKLOAD.keys} keys ...`);
  const keys = makeKeys(WORKLOAD.keys);
  const pool = makeValuePool(WORKLOAD);
  for (let i = 0; i < keys.length; i += 256) await Promise.all(keys.slice(i, i + 256).map((k, j) => shm.set(k, pool[(i + j) % pool.length])));

  cluster.setupPrimary({ exec: __filename, args: ['--worker'] });
  const workers = Array.from({ length: options.workers }, () => cluster.fork());
  await Promise.all(workers.map((w) => workerMessage(w, 'profile', 'ready')));
  const labels = { [process.pid]: 'primary' };
  workers.forEach((w, i) => (labels[w.process.pid] = `worker${i + 1}`));

  const roundTrips = [];
  const profiles = [];
  const perf = [];
  for (const depth of options.depths) {
    for (const mode of ['shm', 'raw']) {
      const runs = [];
      for (let r = 0; r < options.repeat; r++) {
        log(`round trip: ${mode}, ${depth} in flight, run ${r + 1}/${options.repeat} ...`);
        runs.push(await phase(workers, options, mode, depth));
      }
      roundTrips.push(medianRun(runs));
    }
    log(`V8 CPU profile: shm, ${depth} in flight ...`);
    profiles.push(await phase(workers, options, 'shm', depth, { profile: true }));
    if (options.perf && which('perf')) {
      const pids = [process.pid, ...workers.map((w) => w.process.pid)];
      const tids = threadLabels(pids, labels);
      const span = (s) => Math.max(0.5, s - 0.3); // from just after the load starts to just before it ends
      log(`perf record: shm, ${depth} in flight ...`);
      const rec = await phase(workers, options, 'shm', depth, { during: (s) => perfRecord(pids, tids, span(s)) });
      const stats = {};
      for (const mode of ['shm', 'raw']) {
        log(`perf stat: ${mode}, ${depth} in flight ...`);
        const st = await phase(workers, options, mode, depth, { during: (s) => perfStat(pids, tids, span(s)) });
        stats[mode] = { opsPerSec: st.opsPerSec, opsPerSecPerWorker: st.opsPerSecPerWorker, ...st.perf };
      }
      let trace = { error: 'strace is not installed' };
      if (which('strace')) {
        log(`strace -c: shm, ${depth} in flight ...`);
        const targets = [{ pid: process.pid, label: 'primary (broker)' }, { pid: workers[0].process.pid, label: 'worker1' }];
        const tr = await phase(workers, options, 'shm', depth, { during: (s) => straceCounts(targets, span(s)) });
        trace = { opsPerSec: tr.opsPerSec, opsPerSecPerWorker: tr.opsPerSecPerWorker, ...tr.perf };
      }
      perf.push({ depth, record: { opsPerSec: rec.opsPerSec, ...rec.perf }, stats, trace });
    }
  }

  log('redis-benchmark (d) ...');
  const redisBenchmark = await redisBenchmarks(shm.socket, process.env.CLUSTER_SHM_AUTH, log, options.repeat);

  for (const w of workers) w.send({ profile: 'exit' });
  await Promise.all(workers.map((w) => new Promise((resolve) => (w.isDead() ? resolve() : w.once('exit', resolve)))));
  await shm.close();

  const result = { machine, micro, roundTrips, profiles, perf, redisBenchmark, command: `node bench/profile.js ${process.argv.slice(2).join(' ')}`.trim() };
  if (options.json) fs.writeFileSync(options.json, JSON.stringify(result, null, 2));
  console.log(report(result));
}

if (cluster.isWorker) {
  workerMain();
} else {
  primaryMain().then(
    () => {
      cleanUp();
      process.exit(0);
    },
    (error) => {
      console.error(error && error.stack ? error.stack : error);
      cleanUp();
      process.exit(1);
    },
  );
}

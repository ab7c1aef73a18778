#!/usr/bin/env node
'use strict';

/**
 * Where the time of a worker's call goes, layer by layer:
 * `node bench/profile.js [--seconds 3] [--repeat 3] [--workers 2] [--depths 1,64] [--no-perf] [--only layers] [--json file] [--report file]`
 * (`--help` says what each option does).
 *
 * This process is the cluster primary: it requires cluster-shm (so it hosts
 * the broker), pre-fills 10,000 keys with 100-byte JSON values and 1,000
 * keys with 64 KiB Buffers, and forks workers. It measures
 *   the mapped store (what a worker's data calls use): in one worker of its
 *   own, before any other runs, timing loops of each layer of a get and a
 *   set, for both sizes: the awaited API call; the codec (a get decodes the
 *   value where the store copied it); the native store call
 *   (`localStoreGet` / `localStoreSet` on a store the worker attaches
 *   itself); the same call naming a store that was closed (the N-API
 *   crossing and argument conversion alone); and by difference what the
 *   store and the JS API cost. Loops run in interleaved rounds and report the
 *   median round's wall and CPU ns per call. Where `perf` works (unless
 *   --no-perf), perf record of the worker during hot loops of the API call,
 *   the store call and the crossing classes the samples by symbol (lock,
 *   hash, index lookup, copy, journal, N-API glue, allocator, …). The report
 *   names the next bound of each operation from the figures: its largest
 *   layer that is not inherent;
 * and then the socket path, in workers forked with CLUSTER_SHM_LOCAL_STORE=0
 * (every call over the broker's socket, as locks and pub/sub still are):
 *   (a) lib/codec.js encode + decode per value (a loop, here),
 *   (b) lib/resp.js encodeCommand + ReplyParser per call (a loop, here),
 *   (c) the round trip through the real broker from the workers: shm.get /
 *       shm.set 50/50 ("shm"), and the same commands pre-encoded on a bare
 *       net.Socket with a minimal reply scanner ("raw": the floor for a JS
 *       client on this socket), with each process's CPU time, run-queue wait
 *       and context switches per op from /proc; beside them the same load
 *       from workers on the mapped store ("mapped"),
 *   (d) the broker's own time per command: CPU time of its threads per op
 *       during (c), and redis-benchmark against its socket (and against a
 *       redis-server it starts, for reference),
 *   (e) a V8 CPU profile of each worker (inspector module) during the shm
 *       load, summarised per layer; and, where `perf` works, perf record /
 *       perf stat of the broker threads and the workers, and strace -c counts
 *       of their syscalls per op.
 * `--only layers` measures the mapped store alone. It prints Markdown
 * tables (bench/results/profile.md was written from them).
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

const { WORKLOADS, makeKeys, makeValuePool } = require('./lib/workload');
const codec = require('../lib/codec');
const { ENV } = require('../lib/options');
const { encodeCommand, wireChunks, ReplyParser } = require('../lib/resp');
const { FloorClient } = require('./lib/socket-floor');
const { workerMessage } = require('./lib/worker-message');

const WORKLOAD = { name: 'json', keys: 10_000, valueBytes: 100 };
/** What a forked worker does: 'load' (the load phases) or 'layers' (the mapped store's layers). */
const ROLE_ENV = 'PROFILE_WORKER_ROLE';
const now = process.hrtime.bigint;

const USAGE = `usage: node bench/profile.js [--seconds 3] [--repeat 3] [--workers 2] [--depths 1,64] [--no-perf] [--only layers] [--json file] [--report file]

  --seconds N    length of a load phase; the mapped store's timing rounds last N × 20 ms
                 (20-200 ms) and its perf loops N s
  --repeat N     load phases per client and depth (the median is kept); the mapped
                 store's loops run max(5, 2N + 1) rounds
  --workers N    workers of the load phases (the layers are measured in one worker)
  --depths a,b   calls in flight per worker in the load phases
  --no-perf      no perf or strace (the layers' timing loops still run)
  --only layers  only the mapped store's layers: no load phases, no redis-benchmark
  --json file    also write the raw results as JSON
  --report file  print the Markdown of results a run wrote with --json, measuring nothing

Prints Markdown (bench/results/profile.md is written from it); progress goes to stderr.`;

function parseArgs(argv) {
  const options = { seconds: 3, repeat: 3, workers: 2, depths: [1, 64], perf: true, json: null, report: null, only: null, warmupMs: 700, profileIntervalUs: 500 };
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
    else if (arg === '--report') options.report = value();
    else if (arg === '--only') {
      options.only = value();
      if (options.only !== 'layers') throw new Error(`--only takes 'layers', not ${options.only}`);
    }
    else if (arg === '--help' || arg === '-h') {
      console.log(USAGE);
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
        // On the mapped store a call settles without waiting for I/O: let
        // the timers that take the snapshots run now and then.
        if ((ops & 255) === 255) await new Promise(setImmediate);
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
// The mapped store, layer by layer: measured in a worker of its own

/** The size lib/backends/broker.js's read buffer starts at; a binary value past 4 KiB comes back in a Buffer of its own whatever its size. */
const SCRATCH_BYTES = 64 * 1024;
/** The bench's 64 KiB workload: 1,000 keys of 64 KiB random-byte Buffers (bench/lib/workload.js). */
const BIG_WORKLOAD = WORKLOADS.buffer;
const bigKeyName = (i) => `profile:64k:${i}`;

/** The value sizes the layers are measured for: { name: { title, keys, pool } }. */
function layerSizes() {
  return {
    '100 B': { title: `${WORKLOAD.valueBytes}-byte JSON objects, ${int(WORKLOAD.keys)} keys`, keys: makeKeys(WORKLOAD.keys), pool: makeValuePool(WORKLOAD) },
    '64 KiB': {
      title: `64 KiB Buffers, ${int(BIG_WORKLOAD.keys)} keys`,
      keys: Array.from({ length: BIG_WORKLOAD.keys }, (_, i) => bigKeyName(i)),
      pool: makeValuePool(BIG_WORKLOAD),
    },
  };
}

/** How many calls of `fn` take about `ms` milliseconds (the first calls warm it up). */
function calibrate(fn, ms) {
  const end = now() + BigInt(Math.round(ms * 1e6));
  let n = 0;
  while (now() < end) for (let j = 0; j < 64; j++, n++) sink ^= fn(n) ? 1 : 0;
  return n;
}

async function calibrateAsync(fn, ms) {
  const end = now() + BigInt(Math.round(ms * 1e6));
  let n = 0;
  while (now() < end) for (let j = 0; j < 64; j++, n++) sink ^= (await fn(n)) ? 1 : 0;
  return n;
}

/** Wall and CPU (process.cpuUsage: user + system) ns per call of `n` calls of `fn`. */
function timeRound(fn, n) {
  const cpu0 = process.cpuUsage();
  const t0 = now();
  for (let i = 0; i < n; i++) sink ^= fn(i) ? 1 : 0;
  const wallNs = Number(now() - t0);
  const cpu = process.cpuUsage(cpu0);
  return { wall: wallNs / n, cpu: ((cpu.user + cpu.system) * 1e3) / n };
}

async function timeRoundAsync(fn, n) {
  const cpu0 = process.cpuUsage();
  const t0 = now();
  for (let i = 0; i < n; i++) sink ^= (await fn(i)) ? 1 : 0;
  const wallNs = Number(now() - t0);
  const cpu = process.cpuUsage(cpu0);
  return { wall: wallNs / n, cpu: ((cpu.user + cpu.system) * 1e3) / n };
}

/**
 * The mapped-store worker: it attaches stores of its own besides the one
 * its handle maps, and runs the timing loops of each layer of a get and a
 * set, and the hot loops `perf record` watches.
 */
function layersWorkerMain() {
  const shm = require('..');
  const native = require('../lib/native').load();
  const sizes = layerSizes();
  let setup = null;

  process.on('disconnect', () => process.exit(0));
  process.on('message', (message) => {
    if (!message || message.profile === undefined) return;
    const reply = (work) =>
      Promise.resolve()
        .then(work)
        .then(
          (result) => process.send({ profile: 'result', result }),
          (error) => process.send({ profile: 'error', error: String(error && error.stack ? error.stack : error) }),
        );
    if (message.profile === 'layers') reply(async () => measureLayers(await prepare(), message));
    else if (message.profile === 'hot-loop') reply(async () => hotLoop(await prepare(), message));
    else if (message.profile === 'exit') {
      if (setup) setup.store.close();
      Promise.resolve(shm.close()).finally(() => process.exit(0));
    }
  });
  process.send({ profile: 'ready' });

  /**
   * The stores, once: the handle's own first (its first call maps it), then
   * one for the native calls, then one that is closed at once: its id
   * names no store, so a call with it returns right after converting its
   * arguments. Nothing attaches in this process afterwards, so the id is not
   * reused (checked again after every loop).
   */
  async function prepare() {
    if (setup) return setup;
    const memfds = () => (readFile('/proc/self/maps') || '').split('\n').filter((line) => line.includes('memfd:')).length;
    const before = memfds();
    if (!(await shm.get(sizes['100 B'].keys[0]))) throw new Error('the pre-filled keys are missing');
    if (memfds() <= before) throw new Error('the handle did not map the store: its calls go over the socket');
    const attachOptions = { socket: process.env[ENV.SOCKET], authSecret: process.env[ENV.AUTH] };
    const store = native.LocalStore.attach(attachOptions);
    const closed = native.LocalStore.attach(attachOptions);
    const closedId = closed.id;
    closed.close();
    // A random key order, the same for every loop (as the bench picks keys).
    const order = Uint32Array.from({ length: 1 << 16 }, () => (Math.random() * 2 ** 32) >>> 0);
    const ops = {};
    for (const [name, size] of Object.entries(sizes)) {
      const { keys, pool } = size;
      const key = (i) => keys[order[i & 0xffff] % keys.length];
      const value = (i) => pool[i % pool.length];
      const encoded = pool.map((v) => codec.encode(v, 'json'));
      // What set() hands the store: a Buffer's tag and bytes as two parts.
      const inParts = pool.map((v) => codec.encodeInParts(v, 'json'));
      const enc = (i) => inParts[i % inParts.length];
      // A GET's value as the store gives it back: its stored (encoded) bytes.
      const stored = encoded.map((e) => Buffer.from(e));
      // The handle's read buffer.
      const scratch = Buffer.allocUnsafeSlow(SCRATCH_BYTES);
      const length = native.localStoreGet(store.id, keys[0], scratch);
      const fits = typeof length === 'number';
      if (fits && length <= 0) throw new Error(`localStoreGet gave ${length} for a pre-filled key`);
      if (native.localStoreGet(closedId, keys[0], scratch) !== -2) throw new Error('a closed store answered localStoreGet');
      if (native.localStoreSet(closedId, keys[0], inParts[0]) !== undefined) throw new Error('a closed store answered localStoreSet');
      const json = typeof encoded[0] === 'string';
      const texts = json ? encoded : null;
      stored[0].copy(scratch);
      const copyLength = stored[0].length;
      // A long value as the native call returns it: a Buffer of its own, which decode may keep.
      const owned = Buffer.from(stored[0]);
      // A loop that makes a new 64 KiB Buffer per call runs awaited, as the
      // API call is: without awaits the Buffers pile up between garbage
      // collections, their memory goes cold (and back to the system), and
      // each call measured two to three times the cost it has under load.
      const awaited = !fits;
      ops[name] = {
        get: {
          api: { async: true, fn: (i) => shm.get(key(i)) },
          // get() decodes the value where the store copied it: the scratch buffer, or a long value's own Buffer.
          decode: fits ? { fn: () => codec.decodeRead(scratch, copyLength, false) } : { async: awaited, fn: () => codec.decodeRead(owned, owned.length, true) },
          ...(json ? { plain: { fn: (i) => JSON.parse(texts[i % texts.length]) } } : {}),
          store: { async: awaited, fn: (i) => native.localStoreGet(store.id, key(i), scratch), hot: true },
          crossing: { async: awaited, fn: (i) => native.localStoreGet(closedId, key(i), scratch), hot: true },
        },
        set: {
          api: { async: true, fn: (i) => shm.set(key(i), value(i)) },
          encode: { fn: (i) => codec.encodeInParts(value(i), 'json') },
          ...(json ? { plain: { fn: (i) => JSON.stringify(value(i)) } } : {}),
          store: { fn: (i) => native.localStoreSet(store.id, key(i), enc(i)), hot: true },
          crossing: { fn: (i) => native.localStoreSet(closedId, key(i), enc(i)), hot: true },
        },
        fits,
        json,
      };
    }
    const stillClosed = () => {
      if (native.localStoreGet(closedId, sizes['100 B'].keys[0], Buffer.alloc(16)) !== -2) throw new Error(`store id ${closedId} was reused: the crossing loops measured a store`);
    };
    setup = { store, closedId, ops, stillClosed };
    return setup;
  }
}

/**
 * Every loop of every layer, `rounds` times, interleaved (round r of each
 * loop runs before round r + 1 of any), so that a change in the machine's
 * load hits every layer alike; the median round of each, wall and CPU.
 */
async function measureLayers({ ops, stillClosed }, { rounds, roundMs }) {
  const loops = [];
  for (const [size, byOp] of Object.entries(ops)) {
    for (const op of ['get', 'set']) {
      for (const [layer, loop] of Object.entries(byOp[op])) loops.push({ size, op, layer, ...loop });
    }
  }
  for (const loop of loops) loop.n = Math.max(50, loop.async ? await calibrateAsync(loop.fn, roundMs) : calibrate(loop.fn, roundMs));
  const loadavg = os.loadavg();
  for (let r = 0; r < rounds; r++) {
    for (const loop of loops) {
      const t = loop.async ? await timeRoundAsync(loop.fn, loop.n) : timeRound(loop.fn, loop.n);
      (loop.runs ??= []).push(t);
    }
  }
  stillClosed();
  const out = {};
  for (const loop of loops) {
    const entry = ((out[loop.size] ??= { fits: ops[loop.size].fits, json: ops[loop.size].json })[loop.op] ??= {});
    entry[loop.layer] = { wall: median(loop.runs.map((t) => t.wall)), cpu: median(loop.runs.map((t) => t.cpu)), calls: loop.n, rounds };
  }
  return { sizes: out, loadavg, loadavgAfter: os.loadavg() };
}

/** Calls `ops[size][op][layer]` for `ms` milliseconds (perf watches): calls made, wall and CPU ns per call. */
async function hotLoop({ ops, stillClosed }, { size, op, layer, ms }) {
  const { fn, async } = ops[size][op][layer];
  if (async) await calibrateAsync(fn, 50);
  else calibrate(fn, 50);
  const cpu0 = process.cpuUsage();
  const t0 = now();
  const end = t0 + BigInt(Math.round(ms * 1e6));
  let n = 0;
  if (async) while (now() < end) for (let j = 0; j < 256; j++, n++) sink ^= (await fn(n)) ? 1 : 0;
  else while (now() < end) for (let j = 0; j < 256; j++, n++) sink ^= fn(n) ? 1 : 0;
  const wallNs = Number(now() - t0);
  const cpu = process.cpuUsage(cpu0);
  stillClosed();
  return { calls: n, wall: wallNs / n, cpu: ((cpu.user + cpu.system) * 1e3) / n };
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
async function phase(workers, options, mode, depth, { profile = false, during = null, label = mode } = {}) {
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
  return summarisePhase({ mode: label, depth, windowNs: Number(t1 - t0), perWorker, primaryThreads, machine, side: sideResult });
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

/**
 * The classes perf's samples of a hot loop are sorted into, by symbol (the
 * first that matches). Leaf symbols only: a memcpy counts as copy wherever
 * it was called from, argument conversion included, which is why the
 * crossing loop is recorded too and subtracted. The native function's own
 * code (the store's lookup by id, the entry's locks, the clock) is inlined
 * into napi-rs's callback, and counts as glue.
 */
const PERF_CLASSES = [
  ['lock', 'lock: stripe lock (txn::Handle::lock, try_lock), futex, process-local mutexes', (s) => /txn::Handle::(lock|try_lock|lock_admission|wait_for)\b|futex|parking_lot|RawMutex|lock_slow|pthread_mutex/.test(s)],
  ['hash', 'hash: Store::hash, SipHash', (s) => /Store::hash|SipHasher|sip::|siphash|hash::Hasher/i.test(s)],
  ['lookup', 'index lookup: index::find, EntryRef::key_is, memcmp', (s) => /index::.*\bfind\b|entry_near|EntryRef::key_is|Keyspace::locate|memcmp|bcmp/.test(s)],
  ['journal', 'journal: txn::Handle::write, append, begin, commit, finish', (s) => /txn::Handle::(write|append|begin|commit|finish)\b|txn::undo/.test(s)],
  ['copy', 'copy: read_value, read_into, write_at, memcpy/memmove, Region::to_vec', (s) => /read_value|read_into|write_at|memcpy|memmove|Region::to_vec|to_vec/.test(s)],
  ['allocator', 'allocator: malloc, free, V8 backing stores', (s) => /malloc|\bfree\b|cfree|calloc|realloc|jemalloc|\bje_|sdallocx|tcache|_int_free|dealloc|__rust_alloc|BackingStore|ArrayBufferAllocator/.test(s)],
  ['json', 'JSON.parse / JSON.stringify (V8)', (s) => /Json(Parser|Stringifier)|JsonParse|JsonStringify|JSON/.test(s)],
  ['gc', 'V8 garbage collector', (s) => /v8::internal::(Heap|Scaveng|MarkCompact|Sweep|Marking|ConcurrentMarking|MinorM|IncrementalMarking|Evacuat|GCTracer|MemoryAllocator|PagedSpace|SemiSpace|NewSpace|MemoryChunk|LocalHeap)|Scaveng|MarkCompact/.test(s)],
  ['glue', 'N-API / V8 glue: napi_*, the v8:: API, node::, napi-rs bindgen_runtime and callbacks, argument and reply conversion', (s) => /napi|v8::[A-Z]|node::|bindgen_runtime|cluster_shm::node::|FromNapiValue|ToNapiValue|Builtins_CallApi|HandleApiCallback|InvokeFunctionCallback|FunctionCallbackArguments/.test(s)],
  ['store', 'command and keyspace code (dispatch, begin/end of the command, expiry checks)', (s) => /cluster_shm::/.test(s)],
  ['v8', 'V8 builtins and runtime (calls, promises, await, microtasks)', (s) => /Builtins_|v8::internal::|Runtime_/.test(s)],
  ['js', 'JIT code (the API\'s JS and the timing loop)', (s, dso) => dso === '[unknown]' || dso.startsWith('[JIT]') || dso.startsWith('perf-') || /^0x[0-9a-f]+$/.test(s)],
  ['kernel', 'kernel (page faults, scheduling)', (s, dso, kind) => kind === 'k'],
  ['other', 'other (clock reads, libc, node)', () => true],
];
/** The classes that are the store's own work, when they differ between the store call and the crossing. */
const STORE_CLASSES = ['lock', 'hash', 'lookup', 'journal', 'copy', 'allocator', 'store', 'kernel'];

/** perf record of a process (all its threads) for `seconds`: the share of its samples per class of PERF_CLASSES, and the top symbols. */
async function perfRecordProcess(pid, seconds) {
  const file = path.join(tempDir, `perf-loop-${Date.now()}.data`);
  const rec = await run('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '1999', '-p', String(pid), '-o', file, '--', 'sleep', seconds.toFixed(2)]);
  if (rec.code !== 0) return { error: `perf record failed: ${rec.stderr.trim().slice(0, 300)}` };
  const out = await run('perf', ['report', '-i', file, '--stdio', '--no-children', '--sort', 'dso,sym', '-q', '--percent-limit', '0']);
  fs.rmSync(file, { force: true });
  if (out.code !== 0) return { error: `perf report failed: ${out.stderr.trim().slice(0, 300)}` };
  const classes = {};
  const symbols = [];
  for (const line of out.stdout.split('\n')) {
    // "    12.34%  cluster-shm.linux-x64-gnu.node  [.] cluster_shm::shm::Store::hash"
    const m = /^\s*([\d.]+)%\s+(.+?)\s+\[([.kgu])\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const share = Number(m[1]) / 100;
    const [dso, kind, sym] = [m[2], m[3], m[4].trim()];
    const cls = PERF_CLASSES.find(([, , test]) => test(sym, dso, kind))[0];
    classes[cls] = (classes[cls] || 0) + share;
    symbols.push({ share, dso, sym, cls });
  }
  if (symbols.length === 0) return { error: 'perf record gave no samples' };
  return { classes, top: symbols.sort((a, b) => b.share - a.share).slice(0, 12) };
}

/**
 * The layers of a worker's get and set on the mapped store: the timing
 * loops (in the layers worker), then, where perf works, a perf record of the
 * worker during a hot loop of the awaited API call, one of the native store
 * call and one of the crossing alone.
 */
async function storeLayers(worker, options, log) {
  const rounds = Math.max(5, 2 * options.repeat + 1);
  const roundMs = Math.min(200, Math.max(20, options.seconds * 20));
  log(`mapped store: timing loops of each layer, ${rounds} rounds of about ${roundMs} ms each ...`);
  const timing = (await askWorker(worker, { profile: 'layers', rounds, roundMs })).result;
  const perf = {};
  if (options.perf && which('perf')) {
    for (const size of Object.keys(timing.sizes)) {
      for (const op of ['get', 'set']) {
        for (const layer of ['api', 'store', 'crossing']) {
          log(`mapped store: perf record of the worker, ${op} ${size}, ${layer} loop ...`);
          const ms = Math.max(1000, options.seconds * 600);
          const loop = askWorker(worker, { profile: 'hot-loop', size, op, layer, ms });
          await new Promise((r) => setTimeout(r, 200));
          const rec = await perfRecordProcess(worker.process.pid, (ms - 400) / 1000);
          const { result } = await loop;
          ((perf[size] ??= {})[op] ??= {})[layer] = { ...result, ...rec };
        }
      }
    }
  } else perf.skipped = options.perf ? 'perf is not installed' : 'not run (--no-perf)';
  return { ...timing, perf, rounds, roundMs };
}

function askWorker(worker, message) {
  const answer = workerMessage(worker, 'profile', 'result');
  worker.send(message);
  return answer;
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

/**
 * The layers of one operation from its timing loops, each { id, name,
 * inherent, wall, cpu }. Inherent is what any store of these values in
 * shared memory has to do: JSON.stringify / JSON.parse of a JSON value, and
 * the store's own lock, hash, lookup, copy and journal; everything else the
 * call costs is overhead of this implementation.
 */
function layerRows(t, op, { fits, json }) {
  const minus = (a, ...bs) => ({ wall: bs.reduce((x, b) => x - b.wall, a.wall), cpu: bs.reduce((x, b) => x - b.cpu, a.cpu) });
  const codecT = op === 'get' ? t.decode : t.encode;
  const rows = [];
  const add = (id, name, inherent, value) => rows.push({ id, name, short: LAYER_SHORT[id], inherent, wall: value.wall, cpu: value.cpu });
  add(
    'js',
    `the JS API: the handle's checks, the backend's dispatch, the promise and its await, and what the layers cost together beyond their loops alone (cache misses, page faults, GC) (1 − 2 − 3)`,
    false,
    minus(t.api, codecT, t.store),
  );
  if (json) {
    add('json', `JSON: \`${op === 'get' ? 'JSON.parse' : 'JSON.stringify'}\` of the value itself`, true, t.plain);
    add(
      'codec',
      op === 'get' ? 'JSON: the rest of `codec.decodeRead` (tag check, UTF-8 decode of the read buffer)' : 'JSON: the rest of `codec.encode` (the walk that refuses what JSON would change)',
      false,
      minus(codecT, t.plain),
    );
  } else {
    add(
      'codecCopy',
      op === 'get'
        ? fits
          ? '`codec.decodeRead`: the tag check and a copy of the bytes out of the read buffer into a new Buffer'
          : '`codec.decodeRead`: the tag check; the bytes are returned as a view of the Buffer the native call made, not copied'
        : '`codec.encodeInParts`: the 5-byte tag beside the value (the store writes both where they lie)',
      false,
      codecT,
    );
    rows[rows.length - 1].short = op === 'get' ? '`codec.decodeRead`' : '`codec.encodeInParts`';
  }
  add('crossing', `N-API crossing and argument conversion (4: \`${op === 'get' ? 'localStoreGet' : 'localStoreSet'}\` with a closed store's id)`, false, t.crossing);
  if (op === 'get' && !fits) {
    // A binary value past 4 KiB comes back in a Buffer of its own: the copy out of the mapping goes there.
    add('store', 'inside the store: lock, hash, index lookup, and the copy out of the mapping into the new Buffer the call returns (3 − 4)', true, minus(t.store, t.crossing));
  } else {
    add('store', `inside the store: lock, hash, index lookup, copy${op === 'set' ? ', journal' : ''} (3 − 4)`, true, minus(t.store, t.crossing));
  }
  return rows;
}

/** Short names of the layers, for sentences. */
const LAYER_SHORT = {
  js: 'the JS API (checks, dispatch, promise)',
  json: 'JSON itself',
  codec: "the codec's work beyond JSON itself",
  crossing: 'the N-API crossing and argument conversion',
  store: "the store's own work",
};

/** The largest layer that is not inherent, and the sums of both kinds (CPU ns, negative differences as 0). */
function nextBound(rows) {
  const overhead = rows.filter((r) => !r.inherent);
  const bound = overhead.reduce((a, r) => (r.cpu > a.cpu ? r : a), overhead[0]);
  const sum = (list) => list.reduce((a, r) => a + Math.max(0, r.cpu), 0);
  return { bound, overheadCpu: sum(overhead), inherentCpu: sum(rows.filter((r) => r.inherent)) };
}

/** Per class of PERF_CLASSES: ns per call in a hot loop (share × the loop's CPU ns per call). */
function perfPerCall(loop) {
  const out = {};
  for (const [cls, share] of Object.entries(loop.classes || {})) out[cls] = share * loop.cpu;
  return out;
}

const perfOk = (loop) => loop && !loop.error;
const CLASS_SHORT = {
  lock: 'the stripe lock and mutexes',
  hash: 'hashing the key',
  lookup: 'the index lookup',
  journal: 'the journal',
  copy: 'copying',
  allocator: 'the allocator',
  store: 'command and keyspace code',
  kernel: 'the kernel (page faults)',
};

function reportLayers(push, layers) {
  const ns = (x) => (x === undefined || Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US'));
  push(`## The mapped store: a worker's get and set, layer by layer\n`);
  push(
    `Measured in a worker of its own, before the load phases start, on the store it maps; the broker holds the 10,000 pre-filled keys of 100-byte JSON and ${int(BIG_WORKLOAD.keys)} keys of 64 KiB Buffers (the bench's 64 KiB workload: random bytes). Each layer is a timing loop over random keys; the loops run in ${layers.rounds} interleaved rounds of about ${layers.roundMs} ms, and each figure is the median round, in wall ns per call and in CPU ns per call (\`process.cpuUsage\` of the worker: the figure to trust on a loaded machine; shares and bounds use it). Load average (1 / 5 / 15 min) when the loops started ${layers.loadavg.map((v) => v.toFixed(2)).join(' / ')}, when they ended ${layers.loadavgAfter.map((v) => v.toFixed(2)).join(' / ')}.\n`,
  );
  push(
    'The layers: (1) the awaited API call; (2) the codec (a get decodes the value where the store copied it: the handle\'s read buffer, or the Buffer of its own a binary value past 4 KiB comes back in; a set hands a Buffer\'s tag and bytes over as two parts); (3) the native store call (`localStoreGet` / `localStoreSet`) on a store the worker attached itself; (4) the same native call naming a store that was attached and closed: it returns right after converting its arguments, so it is the N-API crossing alone. Inside the store = 3 − 4; the JS API = 1 − 2 − 3. "Inherent" marks what any store of these values in shared memory has to do (JSON.stringify / JSON.parse of the value, the store\'s own lock, hash, lookup, copy and journal); the next bound is the largest layer that is not. A difference below zero is smaller than the noise.\n',
  );
  const summary = {};
  for (const [size, bySize] of Object.entries(layers.sizes)) {
    for (const op of ['get', 'set']) {
      const t = bySize[op];
      const rows = layerRows(t, op, bySize);
      const whole = t.api;
      summary[`${op} ${size}`] = { rows, whole };
      push(`### ${op}, ${size}: \`await shm.${op}(key${op === 'set' ? ', value' : ''})\` ${ns(whole.wall)} ns wall, ${ns(whole.cpu)} ns CPU\n`);
      push('| layer | wall ns/op | CPU ns/op | share (CPU) | inherent |\n| --- | ---: | ---: | ---: | :---: |');
      for (const r of rows) push(`| ${r.name} | ${ns(r.wall)} | ${ns(r.cpu)} | ${pct(r.cpu / whole.cpu)} | ${r.inherent ? 'yes' : 'no'} |`);
      push(`| **the whole awaited call (1)** | **${ns(whole.wall)}** | **${ns(whole.cpu)}** | **100%** | |`);
      push(`| *the native store call (3)* | *${ns(t.store.wall)}* | *${ns(t.store.cpu)}* | *${pct(t.store.cpu / whole.cpu)}* | |`);
      push();
      const b = nextBound(rows);
      const floor = Math.max(whole.cpu - b.overheadCpu, b.inherentCpu);
      let sentence =
        `**Next bound (${op}, ${size}):** ${b.bound.short}, ${ns(b.bound.cpu)} ns of the call's ${ns(whole.cpu)} ns of CPU (${pct(b.bound.cpu / whole.cpu)}). ` +
        `The layers that are not inherent add up to ${ns(b.overheadCpu)} ns (${pct(b.overheadCpu / whole.cpu)}); without them the call would cost about ${ns(floor)} ns.`;
      const loops = layers.perf[size] && layers.perf[size][op];
      if (b.bound.id === 'js' && loops && perfOk(loops.api)) {
        const a = perfPerCall(loops.api);
        const parts = [
          ['JIT code and V8 builtins (the API\'s JS, promises, await)', (a.js || 0) + (a.v8 || 0)],
          ['the kernel (page faults)', a.kernel || 0],
          ['the allocator', a.allocator || 0],
          ['the garbage collector', a.gc || 0],
        ].sort((x, y) => y[1] - x[1]);
        sentence += ` In perf of the whole call, the candidates for it are ${parts.map(([what, v]) => `${what} ${ns(v)} ns`).join(', ')} per call.`;
      }
      if (loops && perfOk(loops.store) && perfOk(loops.crossing)) {
        const inside = perfPerCall(loops.store);
        const cross = perfPerCall(loops.crossing);
        const diff = STORE_CLASSES.map((cls) => [cls, (inside[cls] || 0) - (cross[cls] || 0)]);
        const [topCls, topNs] = diff.reduce((a, d) => (d[1] > a[1] ? d : a));
        sentence += ` Of what the native store call spends beyond the crossing, perf puts the most in ${CLASS_SHORT[topCls]} (about ${ns(topNs)} ns per call).`;
      }
      push(`${sentence}\n`);
    }
  }
  // The bench's main workload: 50/50 gets and sets of 100-byte JSON.
  const g = summary['get 100 B'];
  const s = summary['set 100 B'];
  if (g && s) {
    const mix = new Map();
    for (const r of [...g.rows, ...s.rows]) {
      const e = mix.get(r.id) || { id: r.id, inherent: r.inherent, cpu: 0 };
      e.cpu += r.cpu / 2;
      mix.set(r.id, e);
    }
    const overhead = [...mix.values()].filter((e) => !e.inherent).sort((a, b) => b.cpu - a.cpu);
    const whole = (g.whole.cpu + s.whole.cpu) / 2;
    const inherent = [...mix.values()].filter((e) => e.inherent).reduce((a, e) => a + Math.max(0, e.cpu), 0);
    push(
      `**Over the bench's 50/50 mix of 100-byte gets and sets** (${ns(whole)} ns of CPU per call on average, of which ${ns(inherent)} ns inherent), the layers that are not inherent rank: ${overhead.map((e) => `${LAYER_SHORT[e.id]} ${ns(e.cpu)} ns`).join(', ')}. The next bound is ${LAYER_SHORT[overhead[0].id]}.\n`,
    );
  }
  if (layers.perf.skipped) {
    push(`perf of the loops: ${layers.perf.skipped}.\n`);
    return;
  }
  push('### The loops by perf\n');
  push(
    "`perf record -e cpu-clock -F 1999 -p <the worker>` during a hot loop of the awaited API call (1), of the native store call (3) and of the crossing alone (4). Samples are classed by their own symbol, without call graphs: a `memcpy` counts as copy wherever it was called from, and the native function's own code (the store's lookup by id, the entry's locks, the clock) is inlined into napi-rs's callback and counts as glue. ns per call = the class's share of the loop's samples × the loop's CPU ns per call; 3 − 4 is what the store call spends beyond the crossing, per class. Each loop is a run of its own, so small differences are noise.\n",
  );
  for (const [size, byOp] of Object.entries(layers.perf)) {
    for (const [op, loops] of Object.entries(byOp)) {
      const { api, store, crossing } = loops;
      const failed = [api, store, crossing].find((l) => !perfOk(l));
      if (failed) {
        push(`${op} ${size}: ${failed.error}\n`);
        continue;
      }
      push(`#### ${op}, ${size}: CPU ns per call: API call ${ns(api.cpu)}, store call ${ns(store.cpu)}, crossing alone ${ns(crossing.cpu)}\n`);
      push('| class | (1) API call: share | ns/op | (3) store call: share | ns/op | (4) crossing: ns/op | 3 − 4 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
      const [a, st, cr] = [api, store, crossing].map(perfPerCall);
      for (const [cls, label] of PERF_CLASSES) {
        if (!api.classes[cls] && !store.classes[cls] && !crossing.classes[cls]) continue;
        push(`| ${label} | ${pct(api.classes[cls] || 0)} | ${ns(a[cls] || 0)} | ${pct(store.classes[cls] || 0)} | ${ns(st[cls] || 0)} | ${ns(cr[cls] || 0)} | ${ns((st[cls] || 0) - (cr[cls] || 0))} |`);
      }
      push('\nTop symbols:\n\n| loop | share | class | dso | symbol |\n| --- | ---: | --- | --- | --- |');
      for (const [name, loop] of [['(1) API call', api], ['(3) store call', store]]) {
        for (const row of loop.top.slice(0, 6)) push(`| ${name} | ${(row.share * 100).toFixed(1)}% | ${row.cls} | ${row.dso} | \`${row.sym.slice(0, 100)}\` |`);
      }
      push();
    }
  }
}

function report(result) {
  const lines = [];
  const push = (s = '') => lines.push(s);
  const m = result.micro;
  const mc = result.machine;
  const busy = Math.max(Number(mc.loadavg.split(' / ')[0]), Number(mc.loadavgEnd.split(' / ')[0])) >= mc.cpus;
  const noisy = busy ? ': at least as many runnable tasks as cores, so the figures are noisy (CPU time per op less so than wall time)' : '';
  push('## Machine\n');
  push(`${mc.cpus} × ${mc.model}, node ${mc.node}, \`${result.command}\`: ${mc.workers} workers, ${mc.seconds} s per load phase, median of ${mc.repeat} repeats.`);
  push(`Load average (1 / 5 / 15 min) at the start ${mc.loadavg}, at the end ${mc.loadavgEnd}${noisy}.\n`);
  reportLayers(push, result.layers);
  if (!m) return lines.join('\n');
  push('## The socket path\n');
  push(
    'What follows measures the socket path: workers forked with `CLUSTER_SHM_LOCAL_STORE=0` send every call over the broker\'s socket, as every call went before workers mapped the store (and as locks, pub/sub and data calls while someone listens for key events still do). Only the "mapped" rows of table (c) are workers on the mapped store, for comparison.\n',
  );
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
    push(`### Socket path, per layer, ${mc.workers} workers × ${depth} in flight: worker wall time per op ${f1(W)} µs (${int(shm.opsPerSec)} ops/s)\n`);
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
  push('### (a) codec and (b) the socket client\'s encode/parse, per op (median of 7 loops in the primary, ns)\n');
  push('| what | ns |\n| --- | ---: |');
  for (const [k, v] of Object.entries(m)) push(`| ${MICRO_NAMES[k] || k} | ${f1(v)} |`);
  push();
  push('### (c) round trip through the broker (per worker; CPU and scheduler time per op from /proc)\n');
  push('"shm": `shm.get` / `shm.set` 50/50 over the socket; "raw": the same commands pre-encoded on a bare net.Socket (the floor of a JS client on this socket); "mapped": `shm.get` / `shm.set` in workers that map the store (no round trip: "latency" is the awaited call).\n');
  push('| client | in flight | ops/s (all workers) | worker wall µs/op | mean latency µs | worker CPU µs/op (user+sys) | worker main-thread run-queue wait µs/op | worker ctx switches/op | broker CPU µs/op | broker run-queue wait µs/op | broker ctx switches/op | machine busy | repeats ops/s |');
  push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of result.roundTrips) {
    push(
      `| ${r.mode} | ${r.depth} | ${int(r.opsPerSec)} | ${f1(r.workerWallPerOpUs)} | ${f1(r.meanLatencyUs)} | ${f1(r.workerCpuPerOpUs)} (${f1(r.workerUserPerOpUs)}+${f1(r.workerSysPerOpUs)}) | ${f1(r.workerMainRunqWaitPerOpUs)} | ${f2(r.workerMainSwitchesPerOp)} | ${f1(r.brokerRunPerOpUs)} | ${f1(r.brokerRunqWaitPerOpUs)} | ${f2(r.brokerSwitchesPerOp)} | ${pct(r.machineBusyShare)} | ${r.repeats.map(int).join(', ')} |`,
    );
  }
  push();
  for (const p of result.profiles) {
    push(`### (e) V8 CPU profile of the workers, socket path, shm at ${p.depth} in flight (${int(p.opsPerSec)} ops/s while profiled)\n`);
    push('| layer | share of worker wall time | µs/op |\n| --- | ---: | ---: |');
    for (const [layer, share] of Object.entries(p.profile.layerShare).sort((a, b) => b[1] - a[1])) {
      push(`| ${LAYER_NAMES[layer] || layer} | ${pct(share)} | ${f2(p.profile.layerPerOpUs[layer])} |`);
    }
    push('\nTop self time:\n\n| function | layer | share | µs/op |\n| --- | --- | ---: | ---: |');
    for (const e of p.profile.top) push(`| \`${e.name}\` | ${e.layer} | ${pct(e.share)} | ${f2(e.perOpUs)} |`);
    push();
  }
  for (const p of result.perf) {
    push(`### perf, socket path, shm and raw at ${p.depth} in flight\n`);
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
  push('### (d) redis-benchmark against the broker\'s socket, 100-byte values, 10,000 random keys\n');
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
  if (options.report) {
    console.log(report(JSON.parse(fs.readFileSync(options.report, 'utf8'))));
    return;
  }
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
  const socketPath = options.only !== 'layers';
  let micro = null;
  if (socketPath) {
    log('micro-benchmarks (a), (b) ...');
    micro = microBenchmarks();
  }

  const shm = require('..');
  if (shm.role !== 'primary') throw new Error(`cluster-shm role is ${shm.role}; run this as a plain script`);
  log(`broker at ${shm.socket}; pre-filling ${WORKLOAD.keys} keys of ${WORKLOAD.valueBytes} bytes and ${BIG_WORKLOAD.keys} of 64 KiB ...`);
  const sizes = layerSizes();
  for (const { keys, pool } of Object.values(sizes)) {
    for (let i = 0; i < keys.length; i += 256) await Promise.all(keys.slice(i, i + 256).map((k, j) => shm.set(k, pool[(i + j) % pool.length])));
  }

  cluster.setupPrimary({ exec: __filename, args: ['--worker'] });
  // The workers map the store unless told not to; CLUSTER_SHM_LOCAL_STORE=0 sends their calls over the socket.
  const fork = (role, localStore) => cluster.fork({ [ROLE_ENV]: role, [ENV.LOCAL_STORE]: localStore ? '1' : '0' });
  const started = async (workers) => {
    await Promise.all(workers.map((w) => workerMessage(w, 'profile', 'ready')));
    return workers;
  };
  const stop = (workers) =>
    Promise.all(
      workers.map((w) => {
        const exited = new Promise((resolve) => (w.isDead() ? resolve() : w.once('exit', resolve)));
        if (!w.isDead()) w.send({ profile: 'exit' });
        return exited;
      }),
    );

  // First, with no other worker running: the mapped store, layer by layer.
  const [layersWorker] = await started([fork('layers', true)]);
  const layers = await storeLayers(layersWorker, options, log);
  await stop([layersWorker]);

  const roundTrips = [];
  const profiles = [];
  const perf = [];
  let redisBenchmark = { skipped: 'not run (--only layers)' };
  if (socketPath) {
    const mapped = await started(Array.from({ length: options.workers }, () => fork('load', true)));
    const workers = await started(Array.from({ length: options.workers }, () => fork('load', false)));
    const labels = { [process.pid]: 'primary' };
    workers.forEach((w, i) => (labels[w.process.pid] = `worker${i + 1}`));
    for (const depth of options.depths) {
      for (const mode of ['mapped', 'shm', 'raw']) {
        const runs = [];
        for (let r = 0; r < options.repeat; r++) {
          log(`${mode === 'mapped' ? 'mapped store' : `socket path, round trip: ${mode}`}, ${depth} in flight, run ${r + 1}/${options.repeat} ...`);
          runs.push(mode === 'mapped' ? await phase(mapped, options, 'shm', depth, { label: 'mapped' }) : await phase(workers, options, mode, depth));
        }
        roundTrips.push(medianRun(runs));
      }
      log(`socket path, V8 CPU profile: shm, ${depth} in flight ...`);
      profiles.push(await phase(workers, options, 'shm', depth, { profile: true }));
      if (options.perf && which('perf')) {
        const pids = [process.pid, ...workers.map((w) => w.process.pid)];
        const tids = threadLabels(pids, labels);
        const span = (s) => Math.max(0.5, s - 0.3); // from just after the load starts to just before it ends
        log(`socket path, perf record: shm, ${depth} in flight ...`);
        const rec = await phase(workers, options, 'shm', depth, { during: (s) => perfRecord(pids, tids, span(s)) });
        const stats = {};
        for (const mode of ['shm', 'raw']) {
          log(`socket path, perf stat: ${mode}, ${depth} in flight ...`);
          const st = await phase(workers, options, mode, depth, { during: (s) => perfStat(pids, tids, span(s)) });
          stats[mode] = { opsPerSec: st.opsPerSec, opsPerSecPerWorker: st.opsPerSecPerWorker, ...st.perf };
        }
        let trace = { error: 'strace is not installed' };
        if (which('strace')) {
          log(`socket path, strace -c: shm, ${depth} in flight ...`);
          const targets = [{ pid: process.pid, label: 'primary (broker)' }, { pid: workers[0].process.pid, label: 'worker1' }];
          const tr = await phase(workers, options, 'shm', depth, { during: (s) => straceCounts(targets, span(s)) });
          trace = { opsPerSec: tr.opsPerSec, opsPerSecPerWorker: tr.opsPerSecPerWorker, ...tr.perf };
        }
        perf.push({ depth, record: { opsPerSec: rec.opsPerSec, ...rec.perf }, stats, trace });
      }
    }
    await stop([...mapped, ...workers]);

    log('redis-benchmark (d) ...');
    redisBenchmark = await redisBenchmarks(shm.socket, process.env[ENV.AUTH], log, options.repeat);
  }
  await shm.close();
  machine.loadavgEnd = os.loadavg().map((v) => v.toFixed(2)).join(' / ');

  const result = { machine, layers, micro, roundTrips, profiles, perf, redisBenchmark, command: `node bench/profile.js ${process.argv.slice(2).join(' ')}`.trim() };
  if (options.json) fs.writeFileSync(options.json, JSON.stringify(result, null, 2));
  console.log(report(result));
}

if (cluster.isWorker) {
  if (process.env[ROLE_ENV] === 'layers') layersWorkerMain();
  else workerMain();
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

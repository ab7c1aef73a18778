'use strict';

/**
 * cluster-shm demo: four workers serve HTTP on one port and share state.
 *
 * - a request counter every worker increments atomically;
 * - a cache of "expensive" results: the first worker to compute a result
 *   stores it with a ttl, every other worker serves it from the cache;
 * - a per-worker tally, read back by the primary at the end.
 *
 * The primary drives the requests itself, prints what each worker saw and a
 * summary, and exits.
 */

const cluster = require('node:cluster');
const http = require('node:http');
const shm = require('cluster-shm');

const WORKERS = 4;
const REQUESTS = 400;
const ITEMS = 20;

function expensive(item) {
  // Stands for a database query or a remote call.
  let hash = 0;
  for (let i = 0; i < 200_000; i++) hash = (hash * 31 + item + i) >>> 0;
  return { item, hash, computedBy: cluster.worker.id };
}

async function handle(req, res) {
  const item = Number(new URL(req.url, 'http://x').searchParams.get('item'));
  const requestNumber = await shm.incr('demo:requests');
  await shm.incr(`demo:served-by:${cluster.worker.id}`);
  let result = await shm.get(`demo:cache:${item}`);
  const hit = result !== undefined;
  if (!hit) {
    result = expensive(item);
    await shm.set(`demo:cache:${item}`, result, { ttl: 60_000 });
    await shm.incr('demo:cache-misses');
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ requestNumber, worker: cluster.worker.id, hit, result }));
}

function runWorker() {
  const server = http.createServer((req, res) => {
    handle(req, res).catch((error) => {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: error.message, code: error.code }));
    });
  });
  server.listen(Number(process.env.DEMO_PORT), '127.0.0.1', () => process.send({ ready: true }));
}

function get(port, path) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve(JSON.parse(body)));
      })
      .on('error', reject);
  });
}

async function runPrimary() {
  await shm.clear();
  await shm.set('demo:started', new Date().toISOString());
  const port = await freePort();
  let ready = 0;
  await new Promise((resolve) => {
    for (let i = 0; i < WORKERS; i++) {
      cluster.fork({ DEMO_PORT: String(port) }).on('message', (message) => {
        if (message.ready && ++ready === WORKERS) resolve();
      });
    }
  });
  console.log(`primary ${process.pid}: broker at ${shm.socket}, ${WORKERS} workers on port ${port}`);

  const replies = [];
  const inFlight = 16;
  let next = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < REQUESTS) {
        const n = next++;
        const reply = await get(port, `/?item=${n % ITEMS}`);
        if (reply.error) throw new Error(`worker error: ${reply.code} ${reply.error}`);
        replies.push(reply);
      }
    }),
  );

  const byWorker = new Map();
  for (const reply of replies) {
    const seen = byWorker.get(reply.worker) || { requests: 0, hits: 0, sawResultsFrom: new Set() };
    seen.requests++;
    if (reply.hit) seen.hits++;
    seen.sawResultsFrom.add(reply.result.computedBy);
    byWorker.set(reply.worker, seen);
  }
  for (const [worker, seen] of [...byWorker].sort((a, b) => a[0] - b[0])) {
    const tally = await shm.get(`demo:served-by:${worker}`);
    console.log(
      `worker ${worker}: served ${seen.requests} requests (shared tally says ${tally}), ` +
        `${seen.hits} from the shared cache, results computed by workers ${[...seen.sawResultsFrom].sort().join(', ')}`,
    );
  }

  const counted = await shm.get('demo:requests');
  const misses = await shm.get('demo:cache-misses');
  const numbers = replies.map((r) => r.requestNumber).sort((a, b) => a - b);
  const unique = new Set(numbers).size === numbers.length && numbers[0] === 1 && numbers.at(-1) === REQUESTS;
  const stats = await shm.stats();
  console.log('summary:');
  console.log(`  requests sent ${REQUESTS}, shared counter ${counted} (${counted === REQUESTS ? 'exact' : 'WRONG'})`);
  console.log(`  request numbers handed out: ${unique ? 'each of 1..' + REQUESTS + ' exactly once' : 'NOT unique'}`);
  console.log(`  expensive computations: ${misses} for ${ITEMS} distinct items (${REQUESTS - misses} cache hits)`);
  console.log(`  broker: ${stats.keys} keys, ${stats.usedMemory} bytes used, ${stats.totalCommands} commands served`);

  for (const worker of Object.values(cluster.workers)) worker.kill();
  process.exitCode = counted === REQUESTS && unique ? 0 : 1;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = http.createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

if (cluster.isPrimary) {
  runPrimary().catch((error) => {
    console.error(error);
    process.exit(1);
  });
} else {
  runWorker();
}

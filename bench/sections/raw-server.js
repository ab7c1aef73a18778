'use strict';

/**
 * Raw server comparison: redis-benchmark against the cluster-shm broker
 * (standalone, `node bin/cluster-shm.js serve`) and against redis-server,
 * each fresh, on Unix sockets in a temp dir. The two servers alternate per
 * pipeline depth so that drifting machine load hits both alike.
 */

const { which, startRedis, startBroker } = require('../lib/redis-server');
const { makeTempDir, removeTempDir, trackChild, runProgram } = require('../lib/proc');

function parseCsv(text) {
  const rps = {};
  for (const line of text.split(/\r?\n/)) {
    const cells = line.split(',').map((c) => c.replace(/^"|"$/g, ''));
    if (cells.length >= 2 && cells[0] !== 'test' && Number.isFinite(Number(cells[1]))) rps[cells[0]] = Number(cells[1]);
  }
  return rps;
}

async function runRawServer({ quick, redisAvailable, log }) {
  const bin = which('redis-benchmark');
  if (!bin) return { skipped: 'redis-benchmark is not installed: raw server comparison skipped' };
  // Sized so the slower server still finishes each test in a few seconds on 2 cores.
  const requests = { 1: quick ? 20_000 : 50_000, 16: quick ? 100_000 : 500_000 };
  const dir = makeTempDir();
  const servers = [];
  try {
    const broker = await startBroker(dir);
    trackChild(broker.child);
    servers.push({ name: 'cluster-shm broker', ...broker });
    if (redisAvailable) {
      const redis = await startRedis(dir);
      trackChild(redis.child);
      servers.push({ name: 'redis-server', ...redis });
    }
    const results = [];
    for (const pipeline of [1, 16]) {
      for (const server of servers) {
        const args = ['-s', server.socket, '-t', 'get,set', '-n', String(requests[pipeline]), '-P', String(pipeline), '--csv'];
        const command = `redis-benchmark -s <socket> ${args.slice(2).join(' ')}`;
        log(`  ${server.name}: ${command}`);
        const out = await runProgram(bin, args, 120_000);
        const rps = parseCsv(out.stdout);
        if (out.code !== 0 || rps.GET === undefined || rps.SET === undefined) {
          results.push({ server: server.name, pipeline, command, error: `exit ${out.code}: ${(out.stderr || out.stdout).trim().slice(0, 300)}` });
        } else {
          results.push({ server: server.name, pipeline, command, requests: requests[pipeline], get: rps.GET, set: rps.SET });
        }
      }
    }
    return { results, clients: 50 };
  } finally {
    for (const server of servers) await server.stop();
    removeTempDir(dir);
  }
}

module.exports = { runRawServer };

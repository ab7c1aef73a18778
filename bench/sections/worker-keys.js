'use strict';

/**
 * A large array reply through the worker's client: 1,000,000 keys in a
 * fresh standalone broker, listed with keys() through the JS client a
 * worker uses (lib/connection.js, over the socket), and with `redis-cli
 * KEYS '*'` on the same socket (output to /dev/null). Each is timed in 3
 * alternating rounds; the median is reported.
 */

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const { startBroker, which } = require('../lib/redis-server');
const { makeTempDir, removeTempDir, trackChild } = require('../lib/proc');

const KEYS = 1_000_000;
const BATCH = 10_000;
const ROUNDS = 3;

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)];

async function runWorkerKeys({ log = () => {} } = {}) {
  const redisCli = which('redis-cli');
  if (!redisCli) return { skipped: 'redis-cli is not installed: the keys() comparison is skipped' };
  const dir = makeTempDir();
  const server = await startBroker(dir);
  trackChild(server.child);
  // The client a worker gets: the same BrokerClientBackend over the socket.
  const shm = require('../..').connect({ socket: server.socket });
  const devNull = fs.openSync('/dev/null', 'w');
  try {
    for (let at = 0; at < KEYS; at += BATCH) {
      await shm.mset(Array.from({ length: Math.min(BATCH, KEYS - at) }, (_, i) => [`key:${at + i}`, 1]));
    }
    const workerMs = [];
    const redisCliMs = [];
    for (let round = 0; round < ROUNDS; round++) {
      let started = process.hrtime.bigint();
      const listed = (await shm.keys('*')).length;
      workerMs.push(Number(process.hrtime.bigint() - started) / 1e6);
      if (listed !== KEYS) throw new Error(`keys() listed ${listed} keys, expected ${KEYS}`);
      started = process.hrtime.bigint();
      const cli = spawnSync(redisCli, ['-s', server.socket, 'KEYS', '*'], { stdio: ['ignore', devNull, 'pipe'] });
      redisCliMs.push(Number(process.hrtime.bigint() - started) / 1e6);
      if (cli.status !== 0) throw new Error(`redis-cli failed: ${cli.stderr}`);
      log(`  round ${round + 1}: keys() ${workerMs.at(-1).toFixed(0)} ms, redis-cli KEYS ${redisCliMs.at(-1).toFixed(0)} ms`);
    }
    return { keys: KEYS, rounds: ROUNDS, workerMs, redisCliMs, workerMedianMs: median(workerMs), redisCliMedianMs: median(redisCliMs) };
  } finally {
    fs.closeSync(devNull);
    await shm.close();
    await server.stop();
    removeTempDir(dir);
  }
}

module.exports = { runWorkerKeys };

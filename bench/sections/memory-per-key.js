'use strict';

/**
 * Memory per 100-byte key: 100,000 keys of 100-byte JSON text loaded into a
 * fresh cluster-shm broker and a fresh redis-server. Reported per key: the
 * store's own accounting (INFO used_memory delta, which is the broker's
 * stats().usedMemory) and the process RSS delta (/proc VmRSS).
 */

const Redis = require('ioredis');
const { startRedis, startBroker, info, rssOf } = require('../lib/redis-server');
const { makeTempDir, removeTempDir, trackChild } = require('../lib/proc');
const { keyName, jsonValue } = require('../lib/workload');

const KEYS = 100_000;
const BATCH = 1_000;

/** The RSS of `pid` once it has not fallen for 1 s, or after 12 s. */
async function settledRss(pid) {
  let lowest = rssOf(pid);
  let steadySince = Date.now();
  for (const deadline = Date.now() + 12_000; Date.now() < deadline && Date.now() - steadySince < 1000; ) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const rss = rssOf(pid);
    if (rss < lowest) {
      lowest = rss;
      steadySince = Date.now();
    }
  }
  return rssOf(pid);
}

async function measure(name, start) {
  const dir = makeTempDir();
  const server = await start(dir);
  trackChild(server.child);
  const client = new Redis({ path: server.socket, lazyConnect: true });
  try {
    await client.connect();
    const before = { used: (await info(server.socket)).used_memory, rss: rssOf(server.pid) };
    for (let from = 0; from < KEYS; from += BATCH) {
      const pipeline = client.pipeline();
      for (let i = from; i < Math.min(KEYS, from + BATCH); i++) pipeline.set(keyName(i), JSON.stringify(jsonValue(i)));
      await pipeline.exec();
    }
    const keys = await client.dbsize();
    if (keys !== KEYS) throw new Error(`${name} holds ${keys} keys, expected ${KEYS}`);
    // Let the allocator settle: redis frees its query buffers lazily, and
    // both allocators return the pages of the tables that grew (the old
    // tables) after a decay time, the broker's within about a second. The
    // RSS is read once it has not fallen for a second (at most 12 s).
    const after = { used: (await info(server.socket)).used_memory, rss: await settledRss(server.pid) };
    return {
      server: name,
      keys: KEYS,
      valueBytes: JSON.stringify(jsonValue(KEYS - 1)).length,
      usedBefore: before.used,
      usedAfter: after.used,
      rssBefore: before.rss,
      rssAfter: after.rss,
      usedPerKey: (after.used - before.used) / KEYS,
      rssPerKey: (after.rss - before.rss) / KEYS,
    };
  } finally {
    client.disconnect();
    await server.stop();
    removeTempDir(dir);
  }
}

async function runMemoryPerKey({ redisAvailable }) {
  const results = [await measure('cluster-shm broker', startBroker)];
  if (redisAvailable) results.push(await measure('redis-server', startRedis));
  return { results, keys: KEYS };
}

module.exports = { runMemoryPerKey };

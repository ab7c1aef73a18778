'use strict';

/**
 * The load generator, the same in a worker and in the in-process primary.
 *
 * `depth` lanes each keep one request in flight: a lane picks a random key,
 * gets or sets it (50/50), and starts the next request when the reply comes.
 * Requests completing inside [measureStart, measureEnd) are counted and their
 * latencies recorded; before that is warm-up, and at measureEnd lanes stop
 * issuing and drain.
 */

const { Histogram } = require('./histogram');
const { makeKeys, makeValuePool, prefillValue, looksRight } = require('./workload');

const now = process.hrtime.bigint;

/** Writes every key once so that gets hit, `concurrency` writes at a time. */
async function prefill(client, workload, concurrency = 64) {
  const keys = makeKeys(workload.keys);
  const pool = makeValuePool(workload);
  let next = 0;
  const lane = async () => {
    while (next < keys.length) {
      const i = next++;
      await client.set(keys[i], prefillValue(workload, pool, i));
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, lane));
  // One read back, so a system that silently drops writes fails loudly here.
  const check = await client.get(keys[keys.length - 1]);
  if (!looksRight(workload, check)) {
    throw new Error(`pre-fill check failed: read back ${JSON.stringify(check)?.slice(0, 120)}`);
  }
  return Date.now() - started;
}

/**
 * Runs the 50/50 get/set load until measureEnd (hrtime bigints, comparable
 * across processes: libuv's hrtime is CLOCK_MONOTONIC).
 */
async function runLoad(client, workload, { depth, measureStart, measureEnd, yieldEvery = 0 }) {
  const keys = makeKeys(workload.keys);
  const pool = makeValuePool(workload);
  const histogram = new Histogram();
  const result = { ops: 0, gets: 0, sets: 0, misses: 0, wrong: 0, errors: 0, firstError: null };

  const lane = async () => {
    let sinceYield = 0;
    for (;;) {
      const start = now();
      if (start >= measureEnd) return;
      const key = keys[(Math.random() * keys.length) | 0];
      const isGet = Math.random() < 0.5;
      let value;
      try {
        if (isGet) value = await client.get(key);
        else await client.set(key, pool[(Math.random() * pool.length) | 0]);
      } catch (error) {
        result.errors++;
        if (result.firstError === null) result.firstError = String(error && error.stack ? error.stack : error);
        continue;
      }
      const end = now();
      if (end >= measureStart && end < measureEnd) {
        result.ops++;
        histogram.record(Number(end - start));
        if (isGet) {
          result.gets++;
          // Every key was pre-filled and nothing deletes: a miss is a lost write
          // or a timed-out request answered with `undefined`.
          if (value === undefined || value === null) result.misses++;
          else if (!looksRight(workload, value)) result.wrong++;
        } else {
          result.sets++;
        }
      }
      // In-process calls can resolve without ever leaving the microtask
      // queue; yielding now and then lets the primary's timers run.
      if (yieldEvery && ++sinceYield >= yieldEvery) {
        sinceYield = 0;
        await new Promise(setImmediate);
      }
    }
  };

  await Promise.all(Array.from({ length: depth }, lane));
  return { ...result, histogram: histogram.toJSON() };
}

module.exports = { prefill, runLoad };

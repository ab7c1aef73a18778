'use strict';

/**
 * The load generator, the same in a worker and in the in-process primary.
 *
 * `depth` lanes each keep one request in flight: a lane picks a random key,
 * gets or sets it (the workload's getShare: 50/50, or 90/10 for `read`), and
 * starts the next request when the reply comes.
 * Requests completing inside [measureStart, measureEnd) are counted and their
 * latencies recorded; before that is warm-up, and at measureEnd lanes stop
 * issuing and drain.
 */

const { Histogram } = require('./histogram');
const { makeKeys, valueSource } = require('./workload');

const now = process.hrtime.bigint;

/** Writes every key once so that gets hit, `concurrency` writes at a time. */
async function prefill(client, workload, concurrency = 64) {
  const keys = makeKeys(workload.keys);
  const values = valueSource(workload);
  let next = 0;
  const lane = async () => {
    while (next < keys.length) {
      const i = next++;
      await client.set(keys[i], values.prefill(i));
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, lane));
  // One read back, so a system that silently drops writes fails loudly here.
  const check = await client.get(keys[keys.length - 1]);
  if (!values.check(keys.length - 1, check)) {
    throw new Error(`pre-fill check failed: read back ${JSON.stringify(check)?.slice(0, 120)}`);
  }
  return Date.now() - started;
}

/**
 * Runs the get/set load until measureEnd (hrtime bigints, comparable across
 * processes: libuv's hrtime is CLOCK_MONOTONIC).
 */
async function runLoad(client, workload, { depth, measureStart, measureEnd, yieldEvery = 0 }) {
  const keys = makeKeys(workload.keys);
  const values = valueSource(workload);
  const { getShare } = workload;
  const histogram = new Histogram();
  const result = { ops: 0, gets: 0, sets: 0, misses: 0, wrong: 0, errors: 0, firstError: null };

  const lane = async () => {
    let sinceYield = 0;
    for (;;) {
      const start = now();
      if (start >= measureEnd) return;
      const index = (Math.random() * keys.length) | 0;
      const key = keys[index];
      const isGet = Math.random() < getShare;
      let value;
      try {
        if (isGet) value = await client.get(key);
        else await client.set(key, values.next(index));
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
          else if (!values.check(index, value)) result.wrong++;
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

/**
 * After the load (nothing writes any more): reads every key once through the
 * client, `concurrency` at a time, and returns what it saw, so the primary
 * can compare the workers' views. Each value is reduced to its id, which for
 * keyed values names the write that stored it.
 */
async function readAll(client, workload, concurrency = 64) {
  const keys = makeKeys(workload.keys);
  const values = valueSource(workload);
  const ids = new Array(keys.length).fill(null);
  const result = { reads: 0, misses: 0, wrong: 0, errors: 0, firstError: null };
  let next = 0;
  const lane = async () => {
    while (next < keys.length) {
      const i = next++;
      let value;
      try {
        value = await client.get(keys[i]);
      } catch (error) {
        result.errors++;
        if (result.firstError === null) result.firstError = String(error && error.stack ? error.stack : error);
        continue;
      }
      result.reads++;
      if (value === undefined || value === null) result.misses++;
      else if (!values.check(i, value)) result.wrong++;
      else ids[i] = value.id;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return { ...result, ids };
}

module.exports = { prefill, runLoad, readAll };

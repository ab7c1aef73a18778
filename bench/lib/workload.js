'use strict';

/**
 * The workloads: keys, values and the shape of a run. Every process builds
 * the same keys and values from these functions, so the primary and the
 * workers agree without shipping data around.
 */

const { randomBytes } = require('node:crypto');

const WORKLOADS = {
  // 50/50 get/set of ~100-byte JSON objects over 10,000 keys.
  json: { name: 'json', title: '100-byte JSON values', values: 'json', getShare: 0.5, keys: 10_000, valueBytes: 100 },
  // 64 KiB Buffers. The key count is lower because the IPC-based peers carry
  // a Buffer as JSON ({ type: 'Buffer', data: [65536 numbers] }, ~230 KB of
  // text) and hold it as a JS array of numbers (~512 KiB each): 10,000 such
  // keys would not fit their heaps, nor be pre-filled within the time budget.
  buffer: { name: 'buffer', title: '64 KiB Buffer values', values: 'buffer', getShare: 0.5, keys: 1_000, valueBytes: 64 * 1024 },
  // 90/10 get/set of the same keys and 100-byte JSON objects as `json`: the
  // case a near cache is for. Every value written names its key and a
  // version of its own (see keyedValues), so each get, near-cache hits
  // included, is checked to be a value of that very key, and after the load
  // the workers' views of every key are compared (`verify`): a near-cache
  // entry that missed an invalidation shows up as a disagreement. Before the
  // warm-up every worker reads every key once (`warmRead`, all systems
  // alike), so a near cache starts full as in a long-running server instead
  // of spending the short run filling up.
  read: {
    name: 'read',
    title: '100-byte JSON values, 90/10 read-heavy',
    values: 'json',
    getShare: 0.9,
    keys: 10_000,
    valueBytes: 100,
    keyedValues: true,
    warmRead: true,
    verify: true,
  },
};

/** How many distinct values `set` cycles through (values for pre-fill are per key). */
const VALUE_POOL = 64;
/** Versions a keyed value is written with: 1 … VERSIONS - 1 (0 is the pre-fill). */
const VERSIONS = 100_000;

function keyName(i) {
  return `bench:key:${i}`;
}

function makeKeys(count) {
  return Array.from({ length: count }, (_, i) => keyName(i));
}

/** A plain object whose JSON text is exactly `bytes` long. */
function jsonValue(i, bytes = 100) {
  const value = { id: i, user: `user-${i}`, active: i % 2 === 0, score: (i * 7919) % 1000, tags: ['a', 'b'], pad: '' };
  const missing = bytes - JSON.stringify(value).length;
  if (missing < 0) throw new Error(`a ${bytes}-byte JSON value cannot hold id ${i}`);
  value.pad = 'x'.repeat(missing);
  return value;
}

/** Whether a workload's values are JSON objects (bench/profile.js passes a bare { name: 'json', … }). */
function isJson(workload) {
  return (workload.values ?? workload.name) === 'json';
}

/** Values to write during a run, built once per process. */
function makeValuePool(workload) {
  if (isJson(workload)) return Array.from({ length: VALUE_POOL }, (_, i) => jsonValue(i, workload.valueBytes));
  // Random bytes, so nothing along the way can compress them.
  return Array.from({ length: 4 }, () => randomBytes(workload.valueBytes));
}

/** The value key i is pre-filled with. */
function prefillValue(workload, pool, i) {
  if (workload.keyedValues) return jsonValue(i, workload.valueBytes);
  return isJson(workload) ? jsonValue(i, workload.valueBytes) : pool[i % pool.length];
}

/** Whether a value read back looks like one this workload wrote. */
function looksRight(workload, value) {
  if (isJson(workload)) return value !== null && typeof value === 'object' && typeof value.id === 'number';
  return Buffer.isBuffer(value) && value.length === workload.valueBytes;
}

/**
 * What a run writes and how a value read back is checked, per key index:
 * { prefill(i), next(i), check(i, value) }.
 *
 * - json / buffer: `next` picks from a small shared pool, and `check` is
 *   looksRight (a value of the right shape).
 * - keyed values (read): key i holds jsonValue(i + keys × version), version
 *   0 from the pre-fill and a random 1 … 99,999 per write, so `check` knows
 *   the value belongs to key i and is intact (id, user, score agree), and
 *   two reads of a key agree only if they saw the same write.
 */
function valueSource(workload) {
  if (!workload.keyedValues) {
    const pool = makeValuePool(workload);
    return {
      prefill: (i) => prefillValue(workload, pool, i),
      next: () => pool[(Math.random() * pool.length) | 0],
      check: (_i, value) => looksRight(workload, value),
    };
  }
  const { keys, valueBytes } = workload;
  return {
    prefill: (i) => jsonValue(i, valueBytes),
    next: (i) => jsonValue(i + keys * (1 + ((Math.random() * (VERSIONS - 1)) | 0)), valueBytes),
    check: (i, value) =>
      value !== null &&
      typeof value === 'object' &&
      Number.isSafeInteger(value.id) &&
      value.id % keys === i &&
      value.score === (value.id * 7919) % 1000 &&
      value.user === `user-${value.id}` &&
      typeof value.pad === 'string',
  };
}

module.exports = { WORKLOADS, keyName, makeKeys, jsonValue, makeValuePool, prefillValue, looksRight, valueSource };

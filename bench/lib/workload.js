'use strict';

/**
 * The workloads: keys, values and the shape of a run. Every process builds
 * the same keys and values from these functions, so the primary and the
 * workers agree without shipping data around.
 */

const { randomBytes } = require('node:crypto');

const WORKLOADS = {
  // 50/50 get/set of ~100-byte JSON objects over 10,000 keys.
  json: { name: 'json', title: '100-byte JSON values', keys: 10_000, valueBytes: 100 },
  // 64 KiB Buffers. The key count is lower because the IPC-based peers carry
  // a Buffer as JSON ({ type: 'Buffer', data: [65536 numbers] }, ~230 KB of
  // text) and hold it as a JS array of numbers (~512 KiB each): 10,000 such
  // keys would not fit their heaps, nor be pre-filled within the time budget.
  buffer: { name: 'buffer', title: '64 KiB Buffer values', keys: 1_000, valueBytes: 64 * 1024 },
};

/** How many distinct values `set` cycles through (values for pre-fill are per key). */
const VALUE_POOL = 64;

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

/** Values to write during a run, built once per process. */
function makeValuePool(workload) {
  if (workload.name === 'json') return Array.from({ length: VALUE_POOL }, (_, i) => jsonValue(i, workload.valueBytes));
  // Random bytes, so nothing along the way can compress them.
  return Array.from({ length: 4 }, () => randomBytes(workload.valueBytes));
}

/** The value key i is pre-filled with. */
function prefillValue(workload, pool, i) {
  return workload.name === 'json' ? jsonValue(i, workload.valueBytes) : pool[i % pool.length];
}

/** Whether a value read back looks like one this workload wrote. */
function looksRight(workload, value) {
  if (workload.name === 'json') return value !== null && typeof value === 'object' && typeof value.id === 'number';
  return Buffer.isBuffer(value) && value.length === workload.valueBytes;
}

module.exports = { WORKLOADS, keyName, makeKeys, jsonValue, makeValuePool, prefillValue, looksRight };

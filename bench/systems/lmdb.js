'use strict';

/**
 * lmdb-js: every process maps the same LMDB environment. The primary creates
 * it in a fresh directory of its own (on tmpfs, /dev/shm, where there is one,
 * so no disk is involved, as no disk is for cluster-shm's store) and removes
 * it at the end; each worker opens the same path (BENCH_LMDB_PATH).
 *
 * The fast configuration lmdb-js documents for data that need not survive a
 * crash, the same in every process:
 * - `noSync: true`: commits are not flushed (this also turns off
 *   overlappingSync);
 * - `useWritemap: true`: the write thread writes pages straight into the
 *   shared map instead of through malloc'd pages and pwrite; with noSync,
 *   lmdb-js's README says, reads and writes then involve virtually no I/O
 *   calls (measured here: 20–25 % more ops/s on the 100-byte workload at 2
 *   workers, more on 64 KiB values);
 * - `useVersions: false` (the default): no version stored with an entry;
 * - no `cache`: lmdb-js's object cache is per process and not kept coherent
 *   across processes, as cluster-shm's plain row has no near cache either;
 * - `mapSize` of 1 GiB up front, so the map does not grow (and every process
 *   remap) during the run; the file itself only grows as pages are written;
 * - 100-byte JSON workloads: the workload's JS objects go in as they are and
 *   lmdb-js encodes them itself with its default MessagePack encoding, with
 *   `sharedStructuresKey` (the object shape stored once in the database, as
 *   lmdb-js recommends for objects of one shape; faster to read than both
 *   plain MessagePack and `encoding: 'json'`);
 * - 64 KiB Buffer workload: `encoding: 'binary'`, raw bytes in, a Buffer out.
 *
 * `get` is lmdb-js's synchronous `db.get` (a read of the memory map in the
 * calling process), wrapped in an async function so the harness awaits it
 * as it awaits the others; `set` is `db.put`, whose promise resolves once
 * lmdb-js's write thread has committed the batch holding it, when every
 * process can read it.
 */

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { open } = require('lmdb');

const ENV_PATH = 'BENCH_LMDB_PATH';
const MAP_SIZE = 2 ** 30;

/** The options of the environment, the same in the primary and every worker. */
function options(workload, dir) {
  const base = { path: dir, noSync: true, useWritemap: true, useVersions: false, mapSize: MAP_SIZE };
  if (workload.values === 'json') return { ...base, sharedStructuresKey: Symbol.for('structures') };
  return { ...base, encoding: 'binary' };
}

/** tmpfs where there is one: the data then lives in memory, as cluster-shm's does. */
function baseDir() {
  try {
    if (fs.statSync('/dev/shm').isDirectory()) {
      fs.accessSync('/dev/shm', fs.constants.W_OK);
      return '/dev/shm';
    }
  } catch {
    // no /dev/shm here
  }
  return os.tmpdir();
}

/** Bytes the data file takes up (allocated, not its apparent size). */
function dataFileBytes(dir) {
  try {
    const stat = fs.statSync(path.join(dir, 'data.mdb'));
    return stat.blocks * 512;
  } catch {
    return null;
  }
}

module.exports = {
  async primary({ workload, workerEnv }) {
    const dir = fs.mkdtempSync(path.join(baseDir(), 'cshm-bench-lmdb-'));
    // The run's own temp dir goes with the run; this one is elsewhere, so
    // remove it however the primary ends (close() removes it first).
    const remove = () => fs.rmSync(dir, { recursive: true, force: true });
    process.once('exit', remove);
    const db = open(options(workload, dir));
    workerEnv[ENV_PATH] = dir;
    return {
      rssSource: 'primary process; the data is in the memory-mapped file (store = its allocated size)',
      async memory() {
        return { storePeak: dataFileBytes(dir), rss: process.memoryUsage().rss };
      },
      async close() {
        await db.close();
        remove();
      },
    };
  },

  async client({ workload }) {
    const db = open(options(workload, process.env[ENV_PATH]));
    return {
      get: async (key) => db.get(key),
      set: (key, value) => db.put(key, value),
      close: () => db.close(),
    };
  },
};

'use strict';

const { run } = require('./helpers');
const { BACKEND, testOn, onLinux } = require('./backend');

const MiB = 1024 * 1024;
const RESIDENT = "the broker's resident memory (INFO used_memory_rss), which it reads from /proc/self/status";

describe('memory comes back when the data goes', () => {
  // redis-server 7.0 keeps 21-25 MiB of the same fill one second after
  // FLUSHALL (bench/results/memory-return.md); the broker's process may keep
  // no more, though it is a Node process whose own heap moves a little
  // while it forks and serves the workers.
  const SLACK = 25 * MiB;

  // The broker reads its resident memory from /proc (it reports 0 elsewhere).
  onLinux(RESIDENT, testOn(['embedded', 'standalone'], "the bound is the broker's; bench/results/memory-return.md measures redis-server's own"))(
    'after 5M keys of 100 bytes (~1 GiB) from two workers and clear(), the broker process is back within 25 MiB of its start in 30 s',
    async () => {
      const { messages } = await run('memory-return.js', [String(5_000_000), String(SLACK)], { timeout: 110_000 });
      const [{ keys, usedMemory, before, filled, after, waitedMs }] = messages;
      expect(keys).toBe(5_000_000);
      // The fill did take the memory: the store accounts ~870 MiB.
      expect(usedMemory).toBeGreaterThan(800 * MiB);
      expect(filled - before).toBeGreaterThan(800 * MiB);
      expect(after - before).toBeLessThanOrEqual(SLACK);
      expect(waitedMs).toBeLessThanOrEqual(30_000);
    },
    120_000,
  );

  // The broker reads its resident memory from /proc (it reports 0 elsewhere).
  onLinux(RESIDENT, testOn(['embedded', 'standalone'], "the bound is the broker's; bench/results/memory-return.md measures redis-server's own"))(
    'after 1M keys of 100 bytes from two workers, deleted by the workers, the broker process is back within 25 MiB of its start in 30 s',
    async () => {
      // Small entries live in their stripes' size classes: the sweep
      // compacts the emptied stripes and returns their chunks.
      const { messages } = await run('memory-return.js', [String(1_000_000), String(SLACK), 'del'], { timeout: 80_000 });
      const [{ keys, left, usedMemory, before, filled, after, waitedMs }] = messages;
      expect([keys, left]).toEqual([1_000_000, 0]);
      expect(usedMemory).toBeGreaterThan(150 * MiB);
      expect(filled - before).toBeGreaterThan(150 * MiB);
      expect(after - before).toBeLessThanOrEqual(SLACK);
      expect(waitedMs).toBeLessThanOrEqual(30_000);
    },
    90_000,
  );

  // Redis measures its own resident memory anywhere; the broker reads its own from /proc (0 elsewhere).
  (BACKEND === 'redis' ? test : onLinux(RESIDENT))('stats() reports the resident memory and the fragmentation ratio, as INFO does', async () => {
    const { messages } = await run('stats-memory.js');
    const [{ empty, usedMemory, residentMemory, fragmentationRatio }] = messages;
    expect(usedMemory).toBeGreaterThan(1000 * 1024);
    expect(residentMemory).toBeGreaterThan(usedMemory);
    expect(fragmentationRatio).toBeGreaterThan(1);
    if (BACKEND !== 'redis') {
      // The broker divides the same two figures it reports; Redis samples its own.
      expect(Math.abs(fragmentationRatio - residentMemory / usedMemory)).toBeLessThanOrEqual(0.005 + 1e-9);
      expect(empty).toEqual({ usedMemory: 0, fragmentationRatio: 0 });
    }
  });
});

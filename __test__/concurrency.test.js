'use strict';

const { run } = require('./helpers');
const { BACKEND, testOn, describeOn } = require('./backend');

/** Lock behaviour only a broker has: a queue of waiters, and a dead holder's lock freed at once. */
const brokerLockTest = testOn(
  ['embedded', 'standalone'],
  "the broker queues lock waiters and frees a dead holder's lock at once; Redis locks are leases with no queue (redis.test.js covers them)",
);

describe('atomic operations under real concurrency', () => {
  test.each(['incr', 'update'])('4 workers × 10,000 concurrent %s of one key (64 in flight each) count exactly', async (mode) => {
    const { messages } = await run('counters.js', [mode], { timeout: 120_000 });
    const [{ results, total }] = messages;
    expect(results.map((r) => r.issued)).toEqual([10_000, 10_000, 10_000, 10_000]);
    expect(total).toBe(40_000);
    // Every increment saw a distinct count, so the largest seen is the total.
    expect(Math.max(...results.map((r) => r.maxSeen))).toBe(40_000);
  }, 120_000);
});

describe('locks', () => {
  test('4 workers under withLock never overlap, and the shared value is exact', async () => {
    const { messages } = await run('mutex.js');
    const [{ results, value, stats }] = messages;
    expect(value).toBe(100);
    for (const result of results) {
      expect(result.overlaps).toBe(0);
      expect(result.increasing).toBe(true);
      // A throwing critical section rejects withLock and still releases.
      expect(result.thrown).toBe(`boom from ${result.id}`);
    }
    // Redis keeps no count of held locks.
    expect(stats.locksHeld).toBe(BACKEND === 'redis' ? null : 0);
  });

  brokerLockTest('a holder killed with SIGKILL hands the lock to the waiter at once (ttl was 60 s)', async () => {
    const { messages } = await run('lock-handover.js', ['crash']);
    const [{ waitedAfterRelease, fence, holderFence }] = messages;
    expect(waitedAfterRelease).toBeLessThan(1000);
    expect(fence).toBeGreaterThan(holderFence);
  });

  brokerLockTest('a lock whose ttl passes goes to the next waiter', async () => {
    const { messages } = await run('lock-handover.js', ['ttl']);
    expect(messages[0].fence).toBeGreaterThan(messages[0].holderFence);
  });

  testOn(['embedded'], "it counts the broker's connections, which a shared store also gets from the test harness")(
    "500 concurrent lock waiters in a worker share its one connection, and each gets the lock in turn",
    async () => {
      const { messages } = await run('lock-pool.js');
      expect(messages[0]).toEqual({ opened: 0, ran: 500, failed: [], mostInside: 1, connectionsAfter: 0 });
    },
  );

  brokerLockTest('waiters are served in arrival order', async () => {
    const { messages } = await run('lock-handover.js', ['fairness']);
    const [{ queued, served }] = messages;
    expect(queued).toEqual([2, 3, 4, 5]);
    expect(served).toEqual(queued);
  });
});

describe('single flight', () => {
  test('4 workers × 50 concurrent getOrSet of one missing key run the fetcher exactly once', async () => {
    const { messages } = await run('single-flight.js', ['ok']);
    const [{ results, fetches, stored }] = messages;
    expect(fetches).toBe(1);
    expect(results).toHaveLength(4);
    for (const result of results) {
      expect(result.calls).toBe(50);
      expect(result.distinct).toEqual([{ value: stored }]);
    }
  });

  test('when the one fetch fails, every caller waiting on it gets its error', async () => {
    const { messages } = await run('single-flight.js', ['error']);
    const [{ results, fetches, stored }] = messages;
    expect(fetches).toBe(1);
    expect(stored).toBeUndefined();
    const errors = results.map((r) => r.distinct);
    for (const distinct of errors) {
      expect(distinct).toHaveLength(1);
      expect(distinct[0].error).toMatchObject({ code: 'E_UPSTREAM', message: errors[0][0].error.message });
    }
  });

  brokerLockTest('a fetcher whose process dies hands the job to the next waiter', async () => {
    const { messages } = await run('single-flight.js', ['crash']);
    const [{ results, fetches, stored }] = messages;
    expect(fetches).toBe(1);
    expect(stored).toEqual({ fetchedBy: 2, at: 'once' });
    expect(results[0].distinct).toEqual([{ value: stored }]);
  });

  test('a fetcher that never settles is abandoned after fetchTimeout, and the next caller fetches', async () => {
    const { messages } = await run('single-flight.js', ['hang']);
    const [{ results, fetches, stored }] = messages;
    expect(results[1].error).toMatchObject({ code: 'ERR_SHM_FETCH_TIMEOUT', isError: true });
    expect(results[1].error.message).toBe('getOrSet: the fetcher for "missing" did not settle within 300 ms (fetchTimeout); the next caller fetches instead');
    expect(results[2]).toEqual({ value: { fetchedBy: 2 } });
    expect({ fetches, stored }).toEqual({ fetches: 1, stored: { fetchedBy: 2 } });
  });
});

describe('ttl', () => {
  test('keys expire, ttl counts down, and a million never-read short-lived keys are reclaimed', async () => {
    const { messages } = await run('expiry.js', [], { timeout: 120_000 });
    const [{ worker, many, baseline, loaded, reclaimed, after }] = messages;
    expect(worker).toEqual({
      present: 'here',
      ttlStart: expect.any(Number),
      ttlLater: expect.any(Number),
      gone: true,
      hasGone: false,
      expireSet: true,
      persisted: true,
      survived: 1,
    });
    expect(worker.ttlStart).toBeLessThanOrEqual(100);
    expect(worker.ttlLater).toBeLessThan(worker.ttlStart);
    expect(reclaimed).toBe(true);
    expect(loaded.peakMemory).toBeGreaterThan(baseline.usedMemory + 1_000_000);
    expect(after.keys).toBe(baseline.keys);
    // The broker accounts memory exactly; Redis's used_memory includes allocator state.
    if (BACKEND !== 'redis') expect(after.usedMemory).toBe(baseline.usedMemory);
    expect(after.expiredKeys - baseline.expiredKeys).toBe(many);
  }, 120_000);
});

describeOn(
  ['embedded'],
  'maxMemory, maxKeys and evictionPolicy are options of the broker a primary hosts (a standalone broker takes them as flags, Redis has its own maxmemory)',
  'memory bounds',
  () => {
    test('a write flood past maxMemory stays under the bound and evicts least recently used keys first', async () => {
      const { messages } = await run('eviction.js', ['lru'], { timeout: 120_000 });
      const [{ workers, stats, hotLeft, bound }] = messages;
      for (const worker of workers) {
        // The primary's bound reached the workers, with LRU as the default policy.
        expect(worker.options).toMatchObject({ maxMemory: bound, evictionPolicy: 'allkeys-lru' });
        expect(worker.maxUsed).toBeLessThanOrEqual(bound);
      }
      expect(stats.usedMemory).toBeLessThanOrEqual(bound);
      expect(stats.evictedKeys).toBeGreaterThan(30_000);
      expect(hotLeft).toBe(100);
    }, 120_000);

    test('noeviction refuses writes with ERR_SHM_OOM and keeps what was written intact', async () => {
      const { messages } = await run('eviction.js', ['noeviction'], { timeout: 120_000 });
      const [{ workers, stats, bound }] = messages;
      const [worker] = workers;
      expect(worker.options.evictionPolicy).toBe('noeviction');
      expect(worker.refusal).toMatchObject({ code: 'ERR_SHM_OOM', message: "OOM command not allowed when used memory > 'maxmemory'." });
      expect(worker.written).toBeGreaterThan(1000);
      expect(worker.intact).toBe(worker.written);
      expect(worker.readsStillWork).toBe(true);
      expect(worker.deleteWorks).toBe(true);
      expect(worker.writeAfterDelete).toBe(true);
      expect(stats.evictedKeys).toBe(0);
      expect(stats.usedMemory).toBeLessThanOrEqual(bound);
    }, 120_000);
  },
);

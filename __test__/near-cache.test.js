'use strict';

const { run } = require('./helpers');
const { testOn } = require('./backend');

testOn(['redis'], 'the near cache is for the Redis backend (the test below covers the broker)')(
  'near cache: another worker stops serving a stale copy once the invalidation arrives; own writes, eviction, delete and clear',
  async () => {
    const { messages } = await run('near-cache.js');
    const [r] = messages;
    // The primary is a Redis client like the workers: it has its near cache too.
    expect(r.primaryNearCache).toMatchObject({ keys: 0 });
    // The second read came from the near cache.
    expect(r.cached).toMatchObject({ values: ['v1', 'v1'], hits: 1 });
    // The other worker's write reached it (no fixed timing: the invalidation's
    // delivery is asynchronous), and the new value is cached in turn.
    expect(r.afterRemoteWrite).toMatchObject({ value: 'v2' });
    expect(r.afterRemoteWrite.timedOut).toBeUndefined();
    expect(r.servedFromCacheAgain).toMatchObject({ values: ['v2', 'v2'], hits: 2 });
    // (JSON drops the undefined value: the read loop ended on it.)
    expect(r.afterRemoteDelete).toEqual({ step: 'read until', reads: expect.any(Number), ms: expect.any(Number) });
    // A process always reads its own writes.
    expect(r.ownWrites.stale).toBe(0);
    // maxKeys 50: the least recently used went, the most recent stayed.
    expect(r.eviction).toMatchObject({ keys: 50, e0WasEvicted: true, e79Hit: 1 });
    expect(r.afterRemoteClear).toEqual({ step: 'read until', reads: expect.any(Number), ms: expect.any(Number) });
    // An entry never outlives its key's ttl.
    expect(r.expiry).toMatchObject({ before: ['lives 300 ms', 'lives 300 ms'], after: true });
    // While the process holds a lock, reads go to the server; after, to the near cache again.
    expect(r.locked).toMatchObject({ hitsWhileLocked: 0, hitsAfter: 1, trackingOff: 'ERR_INVALID_ARG_VALUE' });
    // So also once a lock this process never released has expired.
    expect(r.lockExpired).toEqual({ step: 'read after a lock expired', hits: 100 });
  },
);

testOn(['embedded', 'standalone'], 'on Redis the near cache works (the test above)')(
  "nearCache on cluster-shm's broker: accepted and ignored, with one warning in the process that set it; no near cache anywhere",
  async () => {
    const { messages } = await run('near-cache-on-broker.js');
    expect(messages).toEqual([
      {
        warnings: [
          {
            code: 'ERR_SHM_IGNORED_OPTION',
            message: "nearCache: ignored on cluster-shm's own broker, whose workers read the store in their own memory (the near cache is for the Redis backend)",
          },
        ],
        primary: { option: false, nearCache: null },
        worker: { values: ['v', 'v'], option: false, nearCache: null },
      },
    ]);
  },
);

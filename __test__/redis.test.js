'use strict';

// The Redis backend against redis-server processes of its own: encoding
// shared with the embedded broker, lease locks, Redis Cluster, a server that
// refuses CONFIG, and a server that goes away. (The whole suite also runs on
// a redis-server: CLUSTER_SHM_TEST_BACKEND=redis, see __test__/backend.js.)

const { run, start, testWithTool, nearCacheClient } = require('./helpers');
const { describeOn } = require('./backend');
const { startRedis, startRedisTls, startRedisCluster } = require('./redis-server');

describeOn(['embedded'], 'starts redis-servers of its own; runs once, in the embedded run', 'the Redis backend', () => {
  testWithTool('redis-server', 'data written through the embedded broker reads back identically through Redis, and back', async () => {
    const redis = await startRedis();
    try {
      const { messages } = await run('redis-interop.js', [redis.url]);
      const [result] = messages;
      for (const direction of [result.embeddedToRedis, result.redisToEmbedded]) {
        expect(direction.keys).toBe(19);
        expect(direction.differ).toEqual([]);
        expect(direction.ttl).toBeGreaterThan(50_000);
        expect(direction.ttl).toBeLessThanOrEqual(60_000);
      }
      expect(result.sameBytes).toBe(true);
      expect(result.roundTrip).toEqual([]);
      expect(result.counter).toEqual([5, 5, 0.25]);
    } finally {
      await redis.stop();
    }
  });

  testWithTool('redis-server', 'a lock holder killed with SIGKILL keeps the lock until its lease ends, not longer', async () => {
    const redis = await startRedis();
    try {
      const { messages } = await run('redis-lease.js', [], { env: { CLUSTER_SHM_URL: redis.url } });
      const [result] = messages;
      // Alive, the holder renewed its 600 ms lease for 1.8 s.
      expect(result.whileAlive).toBe('ERR_SHM_LOCK_TIMEOUT');
      // Dead, it still holds the lease it last renewed...
      expect(result.justAfter).toBe('ERR_SHM_LOCK_TIMEOUT');
      // ...until that lease ends (renewed every 200 ms, so 400-600 ms left,
      // plus the waiter's polling).
      expect(result.freedAfter).toBeGreaterThanOrEqual(300);
      expect(result.freedAfter).toBeLessThan(result.lease + 500);
      // Fences on Redis are the server's clock at the grant.
      expect(result.fence).toBeGreaterThan(result.holderFence);
    } finally {
      await redis.stop();
    }
  });

  testWithTool(
    ['redis-server', 'redis-cli'],
    'on a Redis Cluster of three masters: keys spread and are shared, multi-key calls follow hash slots with a clear error',
    async () => {
      const redisCluster = await startRedisCluster();
      try {
        const { messages } = await run('redis-cluster.js', [], { env: { CLUSTER_SHM_URL: redisCluster.url } });
        const [result] = messages;
        expect(result.workers).toEqual([
          { own: 99, seenOther: 100, limited: [true, true, false], published: expect.any(Number), fence: 'number' },
          { own: 99, seenOther: 100, limited: [true, true, false], published: expect.any(Number), fence: 'number' },
        ]);
        // PUBLISH counts only the receivers on the node it reached; delivery is cluster-wide.
        expect(result.received).toEqual(['from 1', 'from 2']);
        // 200 worker keys, the counter and two rate limits, over every master
        // (a released lock leaves no key).
        expect(result.keys).toBe(200);
        expect(result.size).toBe(203);
        expect(result.stats).toEqual({ keys: 203, version: 'string' });
        expect(result.counter).toBe(100);
        expect(result.crossSlot.error).toMatchObject({ code: 'ERR_SHM_CROSSSLOT' });
        expect(result.crossSlot.error.message).toMatch(/hash tag/);
        expect(result.sameSlot).toEqual(['Ada', 'ada@example.com']);
        expect(result.watch.error).toMatchObject({ code: 'ERR_SHM_UNSUPPORTED' });
        expect(result.rawKeys.error).toMatchObject({ code: 'ERR_SHM_UNSUPPORTED' });
        expect(result.sizeAfterClear).toBe(0);
        expect(result.nearCache).toEqual({ values: ['value', 'value'], stats: { keys: 0, hits: 0, misses: 2 }, warnings: ['ERR_SHM_UNSUPPORTED'] });
      } finally {
        await redisCluster.stop();
      }
    },
    90_000,
  );

  testWithTool('redis-server', 'a server that refuses CONFIG: watch() warns with a code saying what to set, and works once the server has it', async () => {
    const refusing = await startRedis(['--rename-command', 'CONFIG', '""']);
    const configured = await startRedis(['--rename-command', 'CONFIG', '""', '--notify-keyspace-events', 'KA']);
    try {
      const [off] = (await run('redis-watch.js', [refusing.url])).messages;
      expect(off.warnings).toEqual([expect.objectContaining({ code: 'ERR_SHM_KEY_EVENTS_OFF' })]);
      expect(off.warnings[0].message).toMatch(/notify-keyspace-events/);
      expect(off.events).toEqual([]);
      const [on] = (await run('redis-watch.js', [configured.url])).messages;
      expect(on.warnings).toHaveLength(1);
      expect(on.events).toEqual([
        { key: 'watched', event: 'set' },
        { key: 'watched', event: 'del' },
      ]);
    } finally {
      await Promise.all([refusing.stop(), configured.stop()]);
    }
  });

  testWithTool('redis-server', 'a server that goes away: calls fail with ERR_SHM_UNREACHABLE, and work again once it is back', async () => {
    const redis = await startRedis();
    const client = start('loop-client.js', [], { env: { CLUSTER_SHM_URL: redis.url, CLUSTER_SHM_OPTIONS: '{"connectTimeout":300}' } });
    let restarted;
    try {
      await client.waitFor((m) => m.ok);
      await redis.stop({ keepDir: true });
      const failed = await client.waitFor((m) => !m.ok);
      expect(failed.code).toBe('ERR_SHM_UNREACHABLE');
      restarted = await redis.restart();
      const recovered = await client.waitFor((m) => m.ok && m.i > failed.i);
      expect(recovered.value).toBe(recovered.i);
    } finally {
      client.child.stdin.end();
      await client.done;
      await (restarted || redis).stop();
    }
  });

  testWithTool(['redis-server', 'openssl'], 'rediss:// works over TLS, and an untrusted certificate is ERR_SHM_UNREACHABLE saying why', async () => {
    const redis = await startRedisTls();
    try {
      const trusted = await run('client.js', ['set:k="over TLS"', 'get:k'], { env: { CLUSTER_SHM_URL: redis.url, NODE_EXTRA_CA_CERTS: redis.ca } });
      expect(trusted.messages.slice(1)).toEqual([
        expect.objectContaining({ step: 'set:k="over TLS"', ok: true }),
        expect.objectContaining({ step: 'get:k', ok: true, value: 'over TLS' }),
      ]);
      const untrusted = await run('client.js', ['get:k'], { env: { CLUSTER_SHM_URL: redis.url, CLUSTER_SHM_OPTIONS: '{"connectTimeout":2000}' } });
      expect(untrusted.messages[1]).toMatchObject({ ok: false, error: { code: 'ERR_SHM_UNREACHABLE' } });
      expect(untrusted.messages[1].error.message).toMatch(/certificate/);
    } finally {
      await redis.stop();
    }
  });

  testWithTool('redis-server', 'wrong credentials are ERR_SHM_AUTH, a bad URL is an error with a code, and neither hangs', async () => {
    const redis = await startRedis(['--requirepass', 'sesame']);
    try {
      const [result] = (await run('redis-auth.js', [redis.socket])).messages;
      expect(result.noPassword).toMatchObject({ code: 'ERR_SHM_AUTH' });
      expect(result.wrongPassword).toMatchObject({ code: 'ERR_SHM_AUTH' });
      expect(result.wrongPassword.message).not.toMatch(/wrong-secret/);
      expect(result.rightPassword).toBe('ok');
      expect(result.badScheme).toMatchObject({ code: 'ERR_INVALID_ARG_VALUE' });
      // Passwords holding '@' or '/' stay out of messages too.
      expect(result.atInPassword).toMatchObject({ code: 'ERR_SHM_UNREACHABLE' });
      expect(result.atInPassword.message).not.toMatch(/p@ss|ss@/);
      expect(result.slashInPassword.message).not.toMatch(/p\/ss/);
    } finally {
      await redis.stop();
    }
  });

  testWithTool('redis-server', 'the near cache on Redis: a dropped invalidation connection empties it, so no stale value is served', async () => {
    const redis = await startRedis();
    const Redis = require('ioredis');
    const raw = new Redis({ path: redis.socket, protocol: 2 });
    const near = nearCacheClient({ CLUSTER_SHM_URL: redis.url });
    try {
      await near.ready;
      await raw.set('k', '"v1"');
      await near.get('k');
      const second = await near.get('k');
      expect(second).toMatchObject({ value: 'v1', nearCache: { keys: 1, hits: 1 } });
      // The server drops the invalidation connection: writes from now on
      // would not reach this process, so its near cache must go.
      await raw.client('KILL', 'TYPE', 'pubsub');
      expect(await near.nearCacheEmptied()).toMatchObject({ keys: 0 });
      await raw.set('k', '"v2"');
      expect((await near.get('k')).value).toBe('v2');
      // The data connection goes (the server's idle timeout would do the
      // same): tracking went with it, so the near cache must not trust what it holds.
      expect(await near.get('k')).toMatchObject({ value: 'v2', nearCache: { keys: 1 } });
      await raw.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
      await new Promise((resolve) => setTimeout(resolve, 100));
      await raw.set('k', '"v3"');
      expect((await near.get('k')).value).toBe('v3');
    } finally {
      raw.disconnect();
      await near.stop();
      await redis.stop();
    }
  });
});

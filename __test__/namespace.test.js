'use strict';

const { run, testWithTool } = require('./helpers');
const { describeOn } = require('./backend');
const { startRedis } = require('./redis-server');

describe('namespaces, scan and keyPrefix', () => {
  test('a namespace sees only its keys; scan walks them; keyPrefix prefixes a whole handle and its workers', async () => {
    const { messages } = await run('namespaces.js');
    expect(messages[0]).toEqual({
      rootKeys: ['a*b:k', 'aXb:k', 'cache:a', 'other', 'sessions-lookalike', 'sessions:a', 'sessions:b', 'sessions:e1', 'sessions:x:k'],
      sessionKeys: ['a', 'b', 'e1', 'x:k'],
      sessionKeysMatching: ['a', 'b'],
      sessionSize: 4,
      values: [1, 'c', { user: 'ada' }],
      // JSON has no undefined: the missing key's undefined prints as null.
      mget: [1, { user: 'ada' }, null],
      starred: { keys: ['k'], size: 1 },
      scanRoot: ['a*b:k', 'aXb:k', 'cache:a', 'other', 'sessions-lookalike', 'sessions:a', 'sessions:b', 'sessions:e1', 'sessions:x:k'],
      scanSessions: ['x:k'],
      lockStoredAs: 'sessions:L',
      lockHeldForRoot: 'ERR_SHM_LOCK_TIMEOUT',
      configureNamespace: 'ERR_INVALID_ARG_VALUE',
      badScanCount: 'ERR_OUT_OF_RANGE',
      badName: 'ERR_INVALID_ARG_TYPE',
      events: [{ key: 'e1', event: 'set' }],
      afterClear: ['a*b:k', 'aXb:k', 'cache:a', 'other', 'sessions-lookalike'],
      afterNamespaceClose: 3,
      worker: { keyPrefix: 'app:', keys: ['from-primary', 'from-worker'], size: 2 },
      withoutPrefix: ['app:from-primary', 'app:from-worker'],
    });
  });
});

describeOn(['embedded'], 'starts a redis-server of its own; runs once, in the embedded run', 'namespaces on Redis', () => {
  testWithTool('redis-server', 'keys(), scan(), size() and clear() send Redis no KEYS and no FLUSHDB, and clear() leaves other apps\' keys', async () => {
    const redis = await startRedis();
    try {
      const { messages } = await run('redis-walks.js', [], { env: { CLUSTER_SHM_URL: redis.url } });
      expect(messages[0]).toEqual({
        keys: ['app:a', 'app:b', 'other-app:z'],
        namespaceKeys: ['a', 'b'],
        size: 2,
        scanned: ['a', 'b'],
        afterNamespaceClear: ['other-app:z'],
        afterRootClear: [],
        commandsSent: { keys: 0, flushdb: 0, flushall: 0, scan: expect.any(Number) },
      });
      expect(messages[0].commandsSent.scan).toBeGreaterThan(0);
    } finally {
      await redis.stop();
    }
  });
});

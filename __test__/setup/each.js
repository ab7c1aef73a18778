'use strict';

// On a shared store, every test file and every test starts from an empty
// one with default settings, as it does on the embedded backend where each
// fixture starts its own broker.

const { BACKEND } = require('../backend');

if (BACKEND !== 'embedded') {
  const Redis = require('ioredis');
  let client;
  const flush = async () => {
    if (!client) {
      client =
        BACKEND === 'redis'
          ? new Redis({ path: new URL(process.env.SHM_TEST_URL).pathname, protocol: 2, lazyConnect: true })
          : new Redis({ path: process.env.SHM_TEST_SOCKET, password: process.env.SHM_TEST_AUTH, protocol: 2, lazyConnect: true });
    }
    await client.flushall();
    const defaults = ['maxmemory', '0', 'maxmemory-policy', 'noeviction', 'notify-keyspace-events', ''];
    await client.config('SET', ...defaults, ...(BACKEND === 'standalone' ? ['maxkeys', '0'] : []));
  };
  beforeAll(flush);
  beforeEach(flush);
  afterAll(() => client && client.quit());
}

'use strict';

/**
 * ioredis against a redis-server of this run's own, on a Unix socket. The
 * primary starts redis-server (in the run's process group, so it dies with
 * the run); workers find it through BENCH_REDIS_SOCKET. JSON values go as
 * JSON text and are parsed back, Buffers as bytes (getBuffer), so the client
 * does the same work cluster-shm's client does.
 */

const Redis = require('ioredis');
const { startRedis, parseInfo } = require('../lib/redis-server');

const ENV_SOCKET = 'BENCH_REDIS_SOCKET';

module.exports = {
  async primary({ runDir, workerEnv }) {
    const server = await startRedis(runDir);
    workerEnv[ENV_SOCKET] = server.socket;
    // The sampler's own connection: one INFO every sampling interval.
    const admin = new Redis({ path: server.socket, lazyConnect: true, maxRetriesPerRequest: 1 });
    await admin.connect();
    return {
      rssSource: 'redis-server process',
      // The process whose CPU the bench reports as the server's.
      serverPid: server.pid,
      async memory() {
        const info = parseInfo(await admin.info('memory'));
        return { storePeak: info.used_memory_peak, rss: info.used_memory_rss };
      },
      async close() {
        admin.disconnect();
        await server.stop();
      },
    };
  },

  async client({ workload, system }) {
    const redis = new Redis({
      path: process.env[ENV_SOCKET],
      enableAutoPipelining: Boolean(system.options && system.options.enableAutoPipelining),
      lazyConnect: true,
    });
    await redis.connect();
    if (workload.values === 'json') {
      return {
        get: async (key) => {
          const text = await redis.get(key);
          return text === null ? undefined : JSON.parse(text);
        },
        set: (key, value) => redis.set(key, JSON.stringify(value)),
        close: () => redis.disconnect(),
      };
    }
    return {
      get: async (key) => (await redis.getBuffer(key)) ?? undefined,
      set: (key, value) => redis.set(key, value),
      close: () => redis.disconnect(),
    };
  },
};

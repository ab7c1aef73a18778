'use strict';

/**
 * lru-cache-for-clusters-as-promised as its README shows: init() in the
 * master, getInstance(options) in the workers. Its defaults (timeout 100 ms,
 * failsafe 'resolve') would turn a slow reply into a silent `undefined`
 * under load; a long timeout with failsafe 'reject' makes every request
 * either answer or count as an error.
 */

const { fromIpc, primaryRss } = require('./ipc-value');

const PACKAGE = 'lru-cache-for-clusters-as-promised';

module.exports = {
  async primary() {
    require(PACKAGE).init();
    return { rssSource: 'primary process', memory: async () => primaryRss(), close() {} };
  },

  async client({ workload }) {
    const LRUCache = require(PACKAGE);
    const cache = await LRUCache.getInstance({
      namespace: 'bench',
      max: workload.keys * 2, // never evicts: every get must hit
      timeout: 60_000,
      failsafe: 'reject',
    });
    return {
      get: async (key) => fromIpc(await cache.get(key)),
      set: (key, value) => cache.set(key, value),
      close() {},
    };
  },
};

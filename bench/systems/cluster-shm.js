'use strict';

/**
 * cluster-shm, used as its README says: require it in the primary (which
 * starts the broker and sets CLUSTER_SHM_SOCKET for the workers forked
 * afterwards), and require it in each worker. In the in-process row the
 * primary's own calls are the client. A system with `nearCache` configures
 * it in the primary before forking, as the README's Near cache section
 * says; the workers inherit it. Workers map the broker's store unless the
 * system says `localStore: false`.
 */

module.exports = {
  async primary({ system }) {
    // Self-reference by package name: bench/ lives inside the package.
    const shm = require('cluster-shm');
    if (shm.role !== 'primary') throw new Error(`cluster-shm role is ${shm.role} in the primary`);
    if (system.nearCache) shm.configure({ nearCache: system.nearCache });
    // Inherited by the workers forked next.
    if (system.localStore === false) process.env.CLUSTER_SHM_LOCAL_STORE = '0';
    return {
      client: shm,
      rssSource: 'broker = primary process',
      async memory() {
        const stats = await shm.stats();
        return { storePeak: stats.peakMemory, rss: stats.residentMemory };
      },
      close: () => shm.close(),
    };
  },

  async client({ system }) {
    const shm = require('cluster-shm');
    if (shm.role !== 'worker') throw new Error(`cluster-shm role is ${shm.role} in a worker`);
    if (system.nearCache && !shm.options.nearCache) throw new Error('the worker did not inherit the nearCache option from the primary');
    return shm;
  },

  /** This worker's near cache counters: { keys, hits, misses }, or null without one. */
  async nearCacheStats(shm) {
    return (await shm.stats()).nearCache ?? null;
  },
};

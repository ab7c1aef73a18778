'use strict';

/**
 * cluster-shm, used as its README says: require it in the primary (which
 * starts the broker and sets CLUSTER_SHM_SOCKET for the workers forked
 * afterwards), and require it in each worker. In the in-process row the
 * primary's own calls are the client.
 */

module.exports = {
  async primary() {
    // Self-reference by package name: bench/ lives inside the package.
    const shm = require('cluster-shm');
    if (shm.role !== 'primary') throw new Error(`cluster-shm role is ${shm.role} in the primary`);
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

  async client() {
    const shm = require('cluster-shm');
    if (shm.role !== 'worker') throw new Error(`cluster-shm role is ${shm.role} in a worker`);
    return shm;
  },
};

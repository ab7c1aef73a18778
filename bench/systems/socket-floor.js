'use strict';

/**
 * Not a peer: the ceiling for the broker's clients. cluster-shm's broker,
 * reached from each worker by the minimal client of bench/lib/socket-floor.js
 * doing only what this workload cannot do without: JSON.stringify each
 * value, encode the command, and JSON.parse each value read. It does less
 * per call than any usable client, so its row shows what the socket round
 * trip itself allows on this machine.
 */

const { FloorClient, bulkText } = require('../lib/socket-floor');
const { encodeCommand } = require('../../lib/resp');
const clusterShm = require('./cluster-shm');

module.exports = {
  // The primary hosts the broker exactly as in cluster-shm's own rows.
  primary: (context) => clusterShm.primary(context),

  async client({ workload }) {
    if (workload.values !== 'json') throw new Error('the socket floor runs the 100-byte JSON workloads only');
    const floor = await FloorClient.connect();
    return {
      get: async (key) => {
        const frame = await floor.call(encodeCommand(['GET', key]));
        return frame === null ? undefined : JSON.parse(bulkText(frame));
      },
      set: (key, value) => floor.call(encodeCommand(['SET', key, JSON.stringify(value)])),
      close: () => floor.close(),
    };
  },
};

'use strict';

/**
 * memored as its README shows: required in the master (it hooks every forked
 * worker's messages), store/read with Node-style callbacks in the workers.
 */

const { fromIpc, primaryRss } = require('./ipc-value');

module.exports = {
  async primary() {
    require('memored'); // must be loaded before cluster.fork()
    return { rssSource: 'primary process', memory: async () => primaryRss(), close() {} };
  },

  async client() {
    const memored = require('memored');
    const settle = (resolve, reject) => (error, value) => (error ? reject(error) : resolve(value));
    return {
      get: (key) => new Promise((resolve, reject) => memored.read(key, settle((v) => resolve(fromIpc(v)), reject))),
      set: (key, value) => new Promise((resolve, reject) => memored.store(key, value, settle(resolve, reject))),
      close() {},
    };
  },
};

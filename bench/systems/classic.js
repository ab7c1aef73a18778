'use strict';

/**
 * The hand-rolled pattern of examples/classic/shared-memory.js: a Manager in
 * the primary, a User per worker with callback get/set, wrapped in Promises.
 */

const { Manager, User } = require('../../examples/classic/shared-memory.js');
const { fromIpc, primaryRss } = require('./ipc-value');

module.exports = {
  async primary() {
    new Manager(); // listens on cluster 'message' for the workers' requests
    return { rssSource: 'primary process', memory: async () => primaryRss(), close() {} };
  },

  async client() {
    const user = new User();
    return {
      get: (key) => new Promise((resolve) => user.get(key, (value) => resolve(fromIpc(value)))),
      set: (key, value) => new Promise((resolve) => user.set(key, value, resolve)),
      close() {},
    };
  },
};

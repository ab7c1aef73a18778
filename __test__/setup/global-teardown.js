'use strict';

module.exports = async function globalTeardown() {
  if (globalThis.sharedStore) await globalThis.sharedStore.stop();
};

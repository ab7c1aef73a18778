'use strict';

const fs = require('node:fs');

module.exports = async function globalTeardown() {
  const store = globalThis.sharedStore;
  if (!store) return;
  if (store.child.exitCode === null) {
    const exited = new Promise((resolve) => store.child.once('exit', resolve));
    store.child.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(store.dir, { recursive: true, force: true });
};

'use strict';

// Starts the store a `standalone` or `redis` run shares, and leaves where
// it is in the environment the test files inherit (see __test__/backend.js).

const { randomBytes } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { BACKEND } = require('../backend');
const { serve } = require('../helpers');
const { startRedis } = require('../redis-server');

module.exports = async function globalSetup() {
  if (BACKEND === 'embedded') return;
  if (BACKEND === 'redis') {
    const redis = await startRedis();
    process.env.SHM_TEST_URL = redis.url;
    globalThis.sharedStore = { stop: () => redis.stop() };
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-test-standalone-'));
  const socket = path.join(dir, 'broker.sock');
  const secret = randomBytes(32).toString('hex');
  const authFile = path.join(dir, 'secret');
  fs.writeFileSync(authFile, secret, { mode: 0o600 });
  const broker = serve(['--socket', socket, '--auth-file', authFile]);
  await broker.listening;
  process.env.SHM_TEST_SOCKET = socket;
  process.env.SHM_TEST_AUTH = secret;
  globalThis.sharedStore = {
    async stop() {
      broker.child.kill('SIGTERM');
      await broker.exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
};

'use strict';

// Starts the store a `standalone` or `redis` run shares, and leaves where
// it is in the environment the test files inherit (see __test__/backend.js).

const { spawn } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { BACKEND } = require('../backend');

const ROOT = path.join(__dirname, '..', '..');

async function waitForSocket(file, child, what) {
  for (let waited = 0; waited < 15_000; waited += 50) {
    if (fs.existsSync(file)) return;
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}) before listening`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not listen on ${file} within 15 s`);
}

module.exports = async function globalSetup() {
  if (BACKEND === 'embedded') return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cluster-shm-test-${BACKEND}-`));
  let child;
  let socket;
  if (BACKEND === 'standalone') {
    socket = path.join(dir, 'broker.sock');
    const secret = randomBytes(32).toString('hex');
    const authFile = path.join(dir, 'secret');
    fs.writeFileSync(authFile, secret, { mode: 0o600 });
    const env = { ...process.env };
    for (const name of Object.keys(env)) if (name.startsWith('CLUSTER_SHM_')) delete env[name];
    child = spawn(process.execPath, [path.join(ROOT, 'bin', 'cluster-shm.js'), 'serve', '--socket', socket, '--auth-file', authFile], {
      env,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    process.env.SHM_TEST_SOCKET = socket;
    process.env.SHM_TEST_AUTH = secret;
    await waitForSocket(socket, child, 'cluster-shm serve');
  } else {
    socket = path.join(dir, 'redis.sock');
    const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir];
    child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', () => {});
    process.env.SHM_TEST_URL = `redis+unix://${socket}`;
    await waitForSocket(socket, child, 'redis-server (is it installed? .ci/run installs it)');
  }
  globalThis.sharedStore = { child, dir };
};

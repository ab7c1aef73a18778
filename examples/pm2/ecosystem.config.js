'use strict';

// PM2 with cluster-shm: PM2's cluster mode has no primary of yours to host
// the broker, so the broker runs as an app of its own ("shm") and the web
// app's instances point at its socket. Start with `pm2 start ecosystem.config.js`.
//
// The socket and its secret live in a private directory (mode 0700) made
// here on first start: $XDG_RUNTIME_DIR (a per-user directory most Linux
// systems provide) or else ~/.cache. The secret is made once, so a
// restarted broker and running instances keep agreeing on it.

const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const dir = path.join(process.env.XDG_RUNTIME_DIR || path.join(os.homedir(), '.cache'), 'myapp-shm');
fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
const stat = fs.lstatSync(dir);
if (!stat.isDirectory() || stat.uid !== process.getuid() || (stat.mode & 0o077) !== 0) {
  throw new Error(`${dir} must be a directory of yours that nobody else may enter (mode 0700)`);
}
const socket = path.join(dir, 'shm.sock');
const secretFile = path.join(dir, 'shm.secret');
try {
  fs.writeFileSync(secretFile, crypto.randomBytes(32).toString('hex'), { mode: 0o600, flag: 'wx' });
} catch (error) {
  if (error.code !== 'EEXIST') throw error;
}
const secret = fs.readFileSync(secretFile, 'utf8').trim();

module.exports = {
  apps: [
    {
      name: 'shm',
      script: path.join(path.dirname(require.resolve('cluster-shm/package.json')), 'bin', 'cluster-shm.js'),
      args: ['serve', '--socket', socket, '--auth-file', secretFile, '--max-memory', '256mb'],
      instances: 1,
      exec_mode: 'fork',
      kill_timeout: 5000,
    },
    {
      name: 'web',
      script: path.join(__dirname, 'app.js'),
      exec_mode: 'cluster',
      instances: 2,
      env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret, PORT: process.env.PORT || 3000 },
    },
  ],
};

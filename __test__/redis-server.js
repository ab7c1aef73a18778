'use strict';

// Real redis-server processes for the tests that need a server of their
// own: one on a Unix socket, or a Redis Cluster of three masters on
// loopback ports.

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

async function waitFor(check, what, ms = 15_000) {
  for (let waited = 0; waited < ms; waited += 50) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} within ${ms} ms`);
}

function stopper(children, dir) {
  return async ({ keepDir = false } = {}) => {
    await Promise.all(
      children.map((child) => {
        // A child that never started (spawn failed) emits no 'exit' to wait for.
        if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return undefined;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        return exited;
      }),
    );
    if (!keepDir) fs.rmSync(dir, { recursive: true, force: true });
  };
}

/**
 * A redis-server on a Unix socket: { url, socket, stop({ keepDir }),
 * restart() } (restart: a new server on the same socket). `args` are extra
 * server flags.
 */
async function startRedis(args = [], dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-redis-'))) {
  const socket = path.join(dir, 'redis.sock');
  const child = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir, ...args], {
    stdio: 'ignore',
  });
  let failed = null;
  child.on('error', (error) => (failed = error));
  await waitFor(() => fs.existsSync(socket) || child.exitCode !== null || failed, 'redis-server did not listen');
  if (failed) throw new Error(`redis-server could not start (${failed.code}; is it installed? .ci/run installs it)`);
  if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}`);
  return { url: `redis+unix://${socket}`, socket, stop: stopper([child], dir), restart: () => startRedis(args, dir) };
}

/**
 * A redis-server that only speaks TLS, on a loopback port, with a
 * self-signed certificate made by openssl: { url, ca (the certificate's
 * path), stop() }.
 */
async function startRedisTls() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-redis-tls-'));
  const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
  await new Promise((resolve, reject) =>
    execFile(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'],
      (error) => (error ? reject(error) : resolve()),
    ),
  );
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', '0', '--tls-port', String(port), '--bind', '127.0.0.1', '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  );
  const listening = () =>
    new Promise((resolve) => {
      const probe = net.connect(port, '127.0.0.1', () => {
        probe.destroy();
        resolve(true);
      });
      probe.on('error', () => resolve(false));
    });
  await waitFor(async () => child.exitCode !== null || (await listening()), 'redis-server (TLS) did not listen');
  if (child.exitCode !== null) throw new Error(`redis-server (TLS) exited with ${child.exitCode}`);
  return { url: `rediss://localhost:${port}`, ca: cert, stop: stopper([child], dir) };
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function cli(args) {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: 20_000 }, (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout)));
  });
}

/** A Redis Cluster of three masters: { nodes: [{ host, port }], url, stop() }. */
async function startRedisCluster() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-redis-cluster-'));
  const nodes = [];
  const children = [];
  // The cluster bus listens on port + 10000: pick ports where both are free.
  while (nodes.length < 3) {
    const port = await freePort();
    if (port > 55_000 || nodes.some((n) => Math.abs(n.port - port) < 2)) continue;
    const busFree = await new Promise((resolve) => {
      const probe = net.createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port + 10_000, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (busFree) nodes.push({ host: '127.0.0.1', port });
  }
  for (const { port } of nodes) {
    const nodeDir = path.join(dir, String(port));
    fs.mkdirSync(nodeDir);
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--save', '', '--appendonly', 'no', '--dir', nodeDir],
      { stdio: 'ignore' },
    );
    children.push(child);
  }
  const stop = stopper(children, dir);
  try {
    for (const { port } of nodes) {
      await waitFor(() => cli(['-p', String(port), 'PING']).then((out) => out.trim() === 'PONG', () => false), `redis-server on ${port} did not answer`);
    }
    await cli(['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    for (const { port } of nodes) {
      await waitFor(() => cli(['-p', String(port), 'CLUSTER', 'INFO']).then((out) => out.includes('cluster_state:ok'), () => false), `the cluster on ${port} did not become ok`);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { nodes, url: `redis+cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`, stop };
}

module.exports = { startRedis, startRedisTls, startRedisCluster };

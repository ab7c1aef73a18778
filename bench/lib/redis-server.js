'use strict';

/**
 * Starting and stopping redis-server (and the standalone cluster-shm broker)
 * on a Unix socket inside a run's temp dir, and reading INFO.
 */

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const net = require('node:net');

const REPO = path.join(__dirname, '..', '..');

/** The path of a program on PATH, or null. */
function which(program) {
  for (const dir of (process.env.PATH || '').split(':')) {
    if (!dir) continue;
    const file = path.join(dir, program);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

function redisVersion() {
  const bin = which('redis-server');
  if (!bin) return null;
  const out = spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout || '';
  return (/v=(\S+)/.exec(out) || [])[1] || out.trim();
}

/** Sends one inline command over a fresh connection and resolves with the raw reply text. */
function rawCommand(socket, line, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    let data = '';
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error(`no reply to ${line} on ${socket}`));
    }, timeoutMs);
    conn.on('connect', () => conn.write(`${line}\r\n`));
    conn.on('data', (chunk) => {
      data += chunk;
      // A simple reply, or a complete bulk string ($len\r\n...\r\n).
      const bulk = /^\$(\d+)\r\n/.exec(data);
      if ((bulk && data.length >= bulk[0].length + Number(bulk[1]) + 2) || (!bulk && data.endsWith('\r\n'))) {
        clearTimeout(timer);
        conn.end();
        resolve(bulk ? data.slice(bulk[0].length, bulk[0].length + Number(bulk[1])) : data.trim());
      }
    });
    conn.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** INFO text as { field: value } (numbers where they are numbers). */
function parseInfo(text) {
  const info = {};
  for (const line of String(text).split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at <= 0 || line.startsWith('#')) continue;
    const value = line.slice(at + 1);
    info[line.slice(0, at)] = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return info;
}

async function info(socket, section = 'memory') {
  return parseInfo(await rawCommand(socket, `INFO ${section}`));
}

/** Waits until PING on `socket` answers PONG, or the process exits, or the deadline. */
async function waitForPong(socket, child, what, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  let exited = null;
  child.once('exit', (code, signal) => {
    exited = code ?? signal;
  });
  for (;;) {
    if (exited !== null) throw new Error(`${what} exited (${exited}) before answering on ${socket}`);
    try {
      if ((await rawCommand(socket, 'PING', 500)) === '+PONG') return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${what} did not answer on ${socket} within ${deadlineMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Collects a child's output, so a failure can say why. */
function captureOutput(child) {
  const output = { text: '' };
  const keep = (chunk) => {
    output.text = (output.text + chunk).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return output;
}

/**
 * Starts redis-server listening only on `<dir>/redis.sock`, with persistence
 * off. The child stays in the caller's process group, so killing the run's
 * group also ends it.
 */
async function startRedis(dir) {
  const bin = which('redis-server');
  if (!bin) throw new Error('redis-server is not installed');
  const socket = path.join(dir, 'redis.sock');
  const child = spawn(
    bin,
    ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output = captureOutput(child);
  try {
    await waitForPong(socket, child, 'redis-server');
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${error.message}\n${output.text}`);
  }
  return { socket, pid: child.pid, child, stop: () => stopChild(child) };
}

/** Starts `node bin/cluster-shm.js serve --socket <dir>/broker.sock`. */
async function startBroker(dir) {
  const socket = path.join(dir, 'broker.sock');
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('CLUSTER_SHM_')) delete env[name];
  const child = spawn(process.execPath, [path.join(REPO, 'bin', 'cluster-shm.js'), 'serve', '--socket', socket], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const output = captureOutput(child);
  try {
    await waitForPong(socket, child, 'cluster-shm serve');
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`${error.message}\n${output.text}`);
  }
  return { socket, pid: child.pid, child, stop: () => stopChild(child) };
}

/** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
function stopChild(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Resident memory of a process in bytes, from /proc (VmRSS). */
function rssOf(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : NaN;
}

module.exports = { which, redisVersion, rawCommand, parseInfo, info, startRedis, startBroker, stopChild, rssOf };

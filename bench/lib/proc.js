'use strict';

/**
 * Process and temp-dir bookkeeping. Every run gets a temp dir (its sockets
 * live there: TMPDIR points the cluster-shm broker at it) and a process group
 * of its own (a detached primary; its workers and redis-server inherit the
 * group). Whatever happens, on exit or on a signal, every live group is
 * killed and every temp dir removed.
 */

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const live = { groups: new Set(), children: new Set(), dirs: new Set() };

function killGroup(pgid, signal = 'SIGKILL') {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

function cleanupAll() {
  for (const pgid of live.groups) killGroup(pgid);
  for (const child of live.children) child.kill('SIGKILL');
  for (const dir of live.dirs) fs.rmSync(dir, { recursive: true, force: true });
  live.groups.clear();
  live.children.clear();
  live.dirs.clear();
}

process.on('exit', cleanupAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping every run and removing temp dirs\n`);
    cleanupAll();
    process.exit(130);
  });
}

function makeTempDir(prefix = 'cshm-bench-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  live.dirs.add(dir);
  return dir;
}

function removeTempDir(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  live.dirs.delete(dir);
}

/** Registers a child of the orchestrator itself (a server of a section) for cleanup. */
function trackChild(child) {
  live.children.add(child);
  child.once('exit', () => live.children.delete(child));
  return child;
}

/** The environment of a fresh process tree: nothing of cluster-shm inherited. */
function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('CLUSTER_SHM_') || name.startsWith('BENCH_')) delete env[name];
  return { ...env, ...extra };
}

/**
 * Runs `node bench/primary.js <dir>` for one configuration, in a fresh temp
 * dir and process group, and resolves with its result.json (or a failure).
 */
function runPrimary(config, timeoutMs) {
  const dir = makeTempDir();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'primary.js'), dir], {
    detached: true, // a process group of its own: killing -pid ends the whole tree
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cleanEnv({ TMPDIR: dir }),
  });
  live.groups.add(child.pid);
  let output = '';
  const keep = (chunk) => {
    output = (output + chunk).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);

  return new Promise((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      // The primary is done: anything left in its group (a worker slow to
      // exit, a server) goes now.
      killGroup(child.pid);
      live.groups.delete(child.pid);
      let result;
      try {
        result = JSON.parse(fs.readFileSync(path.join(dir, 'result.json'), 'utf8'));
      } catch {
        result = { ok: false, error: 'no result.json' };
      }
      removeTempDir(dir);
      if (timedOut) result = { ok: false, error: `timed out after ${timeoutMs} ms` };
      else if (code !== 0 && result.ok) result = { ok: false, error: `primary exited with ${code ?? signal}` };
      if (!result.ok) result.output = output.trim();
      resolve(result);
    });
  });
}

/** Runs a program to completion with a timeout; resolves with { code, stdout, stderr }. */
function runProgram(file, args, timeoutMs) {
  return new Promise((resolve) => {
    const child = trackChild(spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}

module.exports = { makeTempDir, removeTempDir, trackChild, cleanEnv, runPrimary, runProgram, cleanupAll };

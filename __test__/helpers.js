'use strict';

const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const { backendEnv, LINUX } = require('./backend');

const FIXTURES = path.join(__dirname, 'fixtures');

/**
 * The environment of a fresh process: no broker inherited from the test
 * runner. CLUSTER_SHM_STORE_BACKING stays: it chooses the store's backing
 * for the whole run (`file` runs the suite on the non-Linux backing).
 */
function cleanEnv(extra = {}) {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('CLUSTER_SHM_') && name !== 'CLUSTER_SHM_STORE_BACKING') delete env[name];
  // Brokers list themselves in the runtime directory; a test that looks there gives its own.
  delete env.XDG_RUNTIME_DIR;
  return { ...env, ...extra };
}

/**
 * Starts `node <fixture> ...args`, pointed at the store the suite runs
 * against (__test__/backend.js); `env` can override that, and `uid`/`gid`
 * run it as another user (the suite must run as root for that). Each line a fixture prints that parses as
 * JSON is collected in `messages`; `waitFor(predicate)` resolves with the
 * first message that matches, `done` when the process exits.
 */
function start(fixture, args = [], { env = {}, timeout = 45_000, uid, gid } = {}) {
  const file = path.isAbsolute(fixture) ? fixture : path.join(FIXTURES, fixture);
  const user = uid === undefined ? {} : { uid, gid };
  const child = spawn(process.execPath, [file, ...args], { env: cleanEnv({ ...backendEnv(), ...env }), stdio: ['pipe', 'pipe', 'pipe'], ...user });
  const messages = [];
  const waiters = [];
  let stdout = '';
  let stderr = '';
  let pending = '';
  child.stdout.on('data', (chunk) => {
    stdout += chunk;
    pending += chunk;
    let newline;
    while ((newline = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        continue;
      }
      messages.push(message);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(message)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(message);
        }
      }
    }
  });
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
  const done = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      for (const waiter of waiters.splice(0)) {
        waiter.reject(new Error(`${fixture} exited (${code ?? signal}) before the awaited message\nstdout:\n${stdout}\nstderr:\n${stderr}`));
      }
      resolve({ code, signal, messages, stdout, stderr });
    });
  });
  return {
    child,
    messages,
    done,
    waitFor(predicate) {
      const found = messages.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => waiters.push({ predicate, resolve, reject }));
    },
  };
}

/** Runs a fixture to the end; fails with its output if it did not exit 0. */
async function run(fixture, args, options) {
  const result = await start(fixture, args, options).done;
  if (result.code !== 0) {
    throw new Error(`${fixture} exited with ${result.code ?? result.signal}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`);
  }
  return result;
}

/** Starts fixtures/hold.js, a primary hosting a broker: { proc, socket, secret }. */
async function startHolder() {
  const proc = start('hold.js');
  const { socket, secret } = await proc.waitFor((m) => m.socket);
  return { proc, socket, secret };
}

async function stopHolder(proc) {
  proc.child.kill('SIGTERM');
  await proc.done;
}

/**
 * Starts `cluster-shm serve ...args` (`env` added to a clean environment):
 * { child, listening (resolves once it listens), exited, output() (its
 * stderr so far) }.
 */
function serve(args, { env = {} } = {}) {
  const child = spawn(process.execPath, [path.join(__dirname, '..', 'bin', 'cluster-shm.js'), 'serve', ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stderr })));
  const listening = new Promise((resolve, reject) => {
    const check = setInterval(() => {
      if (stderr.includes('listening on')) {
        clearInterval(check);
        resolve();
      }
    }, 10);
    exited.then((result) => {
      clearInterval(check);
      reject(new Error(`serve exited early: ${JSON.stringify(result)}`));
    });
  });
  // Callers that expect an early exit never await this.
  listening.catch(() => {});
  return { child, listening, exited, output: () => stderr };
}

/** Where a command-line tool lives, or null. */
function which(tool) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const candidate = path.join(dir, tool);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {}
  }
  return null;
}

/**
 * `test` when every tool it needs is installed; otherwise a skipped test that
 * says which is missing. In CI (CI=true) a missing tool fails the test at
 * once, without running it, so a broken install shows and nothing is left
 * waiting on a program that never started.
 */
function testWithTool(tools, name, fn, timeout) {
  const missing = [].concat(tools).filter((tool) => !which(tool));
  if (missing.length === 0) return test(name, fn, timeout);
  const why = `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not installed; .ci/run installs ${missing.length > 1 ? 'them' : 'it'}`;
  if (process.env.CI === 'true') {
    return test(name, () => {
      throw new Error(`${why} (with CI=true a missing tool fails the tests that need it)`);
    });
  }
  return test.skip(`${name} [skipped: ${why}]`, fn);
}

/**
 * Collects what a spawned program prints (on stdout, or `stream`): `output()` so far, and
 * `printed(text, ms)`, which resolves once the output holds `text` and
 * rejects if the program exits or fails to start first, or after `ms`.
 */
function outputOf(child, stream = 'stdout') {
  let output = '';
  let ended = null;
  const waiters = new Set();
  const settle = () => {
    for (const waiter of waiters) waiter();
  };
  child[stream].on('data', (chunk) => {
    output += chunk;
    settle();
  });
  child.on('error', (error) => {
    ended = `failed to start (${error.code || error.message})`;
    settle();
  });
  child.on('exit', (code, signal) => {
    ended = `exited (${code ?? signal})`;
    settle();
  });
  return {
    output: () => output,
    printed(text, ms = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => finish(new Error(`no ${JSON.stringify(text)} within ${ms} ms; output so far: ${JSON.stringify(output)}`)), ms);
        const finish = (error) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (error) reject(error);
          else resolve(output);
        };
        const check = () => {
          if (output.includes(text)) finish();
          else if (ended) finish(new Error(`${child.spawnfile} ${ended} before printing ${JSON.stringify(text)}; output: ${JSON.stringify(output)}`));
        };
        waiters.add(check);
        check();
      });
    },
  };
}

/**
 * Drives fixtures/near-cache-client.js: `get(key)` and `stats()` resolve
 * with its answers; `nearCacheEmptied()` with the stats once its near cache
 * holds no key (the check repeats every 20 ms).
 */
function nearCacheClient(env) {
  const client = start('near-cache-client.js', [], { env });
  const ask = (line, predicate) => {
    const seen = client.messages.length;
    client.child.stdin.write(`${line}\n`);
    return client.waitFor((m) => client.messages.indexOf(m) >= seen && predicate(m));
  };
  return {
    client,
    ready: client.waitFor((m) => m.ready),
    get: (key) => ask(`get ${key}`, (m) => m.key === key),
    stats: () => ask('stats', (m) => 'nearCache' in m && !('key' in m)),
    async nearCacheEmptied() {
      for (;;) {
        const { nearCache } = await ask('stats', (m) => 'nearCache' in m && !('key' in m));
        if (nearCache.keys === 0) return nearCache;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async stop() {
      client.child.stdin.end();
      client.child.kill('SIGTERM');
      await client.done;
    },
  };
}

/**
 * Stops a process with SIGSTOP and waits until every one of its threads is
 * stopped: kill() returns before a busy or descheduled thread has taken the
 * signal, and a broker thread still running could answer one more call.
 * On Linux each thread's state is read from /proc. macOS has no /proc; it
 * suspends the whole task as it delivers SIGSTOP, and `ps` shows the
 * process stopped (T) once it has.
 */
async function stopProcess(child, timeoutMs = 5_000) {
  child.kill('SIGSTOP');
  const until = Date.now() + timeoutMs;
  const stopped = LINUX
    ? () =>
        fs.readdirSync(`/proc/${child.pid}/task`).every((tid) => {
          const stat = fs.readFileSync(`/proc/${child.pid}/task/${tid}/stat`, 'utf8');
          return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
        })
    : () => /^T/.test(execFileSync('ps', ['-o', 'stat=', '-p', String(child.pid)], { encoding: 'utf8' }).trim());
  while (!stopped()) {
    if (Date.now() > until) throw new Error(`process ${child.pid} did not stop within ${timeoutMs} ms of SIGSTOP`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

module.exports = { start, run, serve, cleanEnv, which, testWithTool, outputOf, startHolder, stopHolder, stopProcess, nearCacheClient, FIXTURES };

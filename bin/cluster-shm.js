#!/usr/bin/env node
'use strict';

/**
 * cluster-shm command line.
 *
 * `serve` runs the broker as a process of its own, in the foreground, for
 * processes that have no cluster primary to host it (PM2 cluster mode,
 * separate node processes). Point them at it with CLUSTER_SHM_SOCKET.
 *
 * `ls` lists this user's running brokers (embedded in an app's primary, or
 * `serve`): each writes a connection file into a private runtime directory
 * (lib/runtime.js). The other commands inspect or change one of them,
 * chosen by --pid, --name or --socket, or the only one running.
 *
 * Exit codes: 0 done, 1 a runtime error (its path and cause on stderr),
 * 2 a usage error (one line and a hint).
 */

const fs = require('node:fs');
const path = require('node:path');

const USAGE = `usage: cluster-shm <command> [options]

cluster-shm serve [--socket PATH] [--name NAME] [--max-memory BYTES] [--max-keys N]
                  [--eviction-policy POLICY] [--persist PATH] [--auth-file PATH]

  --socket PATH            where to listen (default: broker.sock in the runtime directory)
  --name NAME              the name \`cluster-shm ls\` shows (default: serve)
  --max-memory BYTES       memory bound of the store (0: none); k, kb, m, mb, g, gb suffixes allowed
  --max-keys N             bound on the number of keys (0: none)
  --eviction-policy NAME   noeviction, allkeys-lru (default once a bound is set) or volatile-ttl
  --persist PATH           load this snapshot at start and write it on stop (and on SAVE)
  --auth-file PATH         connections must AUTH with the secret in this file (first line);
                           CLUSTER_SHM_AUTH in the environment does the same. Clients
                           pass the secret in CLUSTER_SHM_AUTH.

cluster-shm ls                     this user's running brokers (apps and serve)
cluster-shm stats                  a broker's figures
cluster-shm keys [PATTERN]         keys matching a glob pattern (default *)
cluster-shm get KEY                a key's value, decoded as the API would
cluster-shm set KEY VALUE          stores VALUE: JSON when it parses as JSON, else the text
    [--ttl MS] [--string]          (--string: always the text)
cluster-shm del KEY...             deletes keys; prints how many existed
cluster-shm monitor                ops/s, memory, keys and clients every second
    [--interval MS] [--count N]    (until Ctrl-C, or N lines)

  which broker: --pid PID or --name NAME (from \`cluster-shm ls\`), --socket PATH
  (with --auth-file PATH or CLUSTER_SHM_AUTH), CLUSTER_SHM_SOCKET, or else the
  only one running. --json for machine-readable output.

cluster-shm --version, --help
`;

const HINT = 'cluster-shm --help shows the usage';

/** A usage error: one line and a hint, exit 2. */
function usage(message) {
  process.stderr.write(`cluster-shm: ${message} (${HINT})\n`);
  process.exit(2);
}

/** A runtime error: what failed, with its path and cause, exit 1. */
function fail(message) {
  process.stderr.write(`cluster-shm: ${message}\n`);
  process.exit(1);
}

/** Parses `--name value` pairs (and the `booleans` given alone) against the names a command accepts. */
function parseFlags(args, accepted, booleans = []) {
  const flags = {};
  const positional = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (!arg.startsWith('--')) {
      positional.push(arg);
      continue;
    }
    if (booleans.includes(arg)) {
      flags[arg.slice(2)] = true;
      continue;
    }
    if (!accepted.includes(arg)) usage(`unknown option ${JSON.stringify(arg)}`);
    if (i + 1 >= args.length) usage(`${arg} needs a value`);
    flags[arg.slice(2)] = args[++i];
  }
  return { flags, positional };
}

function parseBytes(text, name) {
  const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(text);
  if (!match) usage(`${name} must be a number of bytes, optionally with a unit (k, kb, m, mb, g, gb)`);
  const units = { b: 1, k: 1e3, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 };
  return Number(match[1]) * units[(match[2] || 'b').toLowerCase()];
}

/** The secret from --auth-file, else CLUSTER_SHM_AUTH, else none. Never printed. */
function readSecret(file) {
  if (file === undefined) return process.env.CLUSTER_SHM_AUTH || undefined;
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    fail(`cannot read the --auth-file ${file}: ${error.code || error.message}`);
  }
  const secret = text.split(/\r?\n/, 1)[0].trim();
  if (!secret) fail(`the --auth-file ${file} holds no secret`);
  return secret;
}

/** The default socket: broker.sock in this user's private runtime directory. */
function defaultSocket() {
  const { runtimeDir, privateDir } = require('../lib/runtime');
  try {
    return path.join(privateDir(runtimeDir()), 'broker.sock');
  } catch (error) {
    fail(`${error.message}; remove it or pass --socket`);
  }
}

/** Why nothing can listen at `socket`, or null. */
function unusableSocketPath(socket) {
  const dir = path.dirname(socket);
  try {
    if (!fs.statSync(dir).isDirectory()) return `${dir} is not a directory`;
  } catch (error) {
    return `the directory ${dir} ${error.code === 'ENOENT' ? 'does not exist' : `cannot be read (${error.code})`}`;
  }
  return null;
}

/**
 * A process's parent pid and command line: from /proc where there is one
 * (Linux, where slim images may have no `ps`), else from `ps` (macOS, the
 * BSDs). Throws when the process cannot be read.
 */
function processInfo(pid) {
  if (fs.existsSync('/proc/self/stat')) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return { parent: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]), command: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') };
  }
  const line = require('node:child_process').execFileSync('ps', ['-o', 'ppid=', '-o', 'args=', '-p', String(pid)], { encoding: 'utf8' });
  const match = /^\s*(\d+)\s+(.*)$/s.exec(line);
  if (!match) throw new Error(`no process ${pid}`);
  return { parent: Number(match[1]), command: match[2] };
}

/**
 * Launched by npm (`npx cluster-shm serve`, an npm script), this process is
 * the child of a shell that is the child of npm, and a signal sent to npm
 * does not reach it. It stops when that npm process is gone, so that
 * stopping npm never leaves the broker running on its own.
 */
function stopWithNpm(stop) {
  if (!process.env.npm_command) return;
  let npm = null;
  try {
    for (let pid = process.ppid; pid > 1; ) {
      const { parent, command } = processInfo(pid);
      if (/npm|npx/.test(command)) {
        npm = pid;
        break;
      }
      pid = parent;
    }
  } catch {
    return;
  }
  if (npm === null) return;
  const watch = setInterval(() => {
    try {
      process.kill(npm, 0);
    } catch {
      clearInterval(watch);
      stop(`npm (pid ${npm}) exited`);
    }
  }, 500);
  watch.unref();
}

function serve(args) {
  const { flags, positional } = parseFlags(args, ['--socket', '--name', '--max-memory', '--max-keys', '--eviction-policy', '--persist', '--auth-file']);
  if (positional.length) usage(`serve takes no argument ${JSON.stringify(positional[0])}`);
  const native = require('../lib/native').load();
  const { SharedMemory } = require('../lib/api');
  const { InProcessBackend } = require('../lib/backends');
  const { validateOptions } = require('../lib/options');
  const { announce } = require('../lib/runtime');

  // Everything is checked before the broker starts, so a bad flag leaves nothing behind.
  const options = {};
  if (flags['max-memory'] !== undefined) options.maxMemory = parseBytes(flags['max-memory'], '--max-memory');
  if (flags['max-keys'] !== undefined) options.maxKeys = Number(flags['max-keys']);
  if (flags['eviction-policy'] !== undefined) options.evictionPolicy = flags['eviction-policy'];
  if (flags.persist !== undefined) options.persist = flags.persist;
  try {
    validateOptions(options);
  } catch (error) {
    usage(error.message);
  }
  const authSecret = readSecret(flags['auth-file']);
  const socket = path.resolve(flags.socket || defaultSocket());
  const unusable = unusableSocketPath(socket);
  if (unusable) fail(`cannot listen on ${socket}: ${unusable}`);

  let broker;
  try {
    broker = native.Broker.start({ socket, authSecret });
  } catch (error) {
    fail(`cannot listen on ${socket}: ${error.message.replace(/^ERR_SHM_[A-Z_]+ /, '')}`);
  }
  const backend = new InProcessBackend(native, broker, { onClose: announce({ socket: broker.socket, secret: authSecret, name: flags.name || 'serve' }) || undefined });
  const shm = new SharedMemory({ backend, role: 'primary', socket: broker.socket });
  try {
    shm.configure(options);
  } catch (error) {
    backend.close();
    fail(error.message);
  }

  // The broker runs on its own threads; this keeps the process up until a signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const stop = (why) => {
    clearInterval(keepAlive);
    try {
      backend.close();
    } catch (error) {
      // The final snapshot was not written: a supervisor must be able to tell.
      process.stderr.write(`cluster-shm broker stopped (${why}); ${broker.socket} removed; ${error.message.replace(/^ERR_SHM_[A-Z_]+ /, '')}\n`);
      process.exit(1);
    }
    process.stderr.write(`cluster-shm broker stopped (${why}); ${broker.socket} removed\n`);
    process.exit(0);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(signal, stop);
  stopWithNpm(stop);

  const { maxMemory, maxKeys, evictionPolicy } = shm.options;
  process.stderr.write(
    `cluster-shm broker ${require('../package.json').version} listening on ${broker.socket}\n` +
      `  max memory ${maxMemory || 'unbounded'}, max keys ${maxKeys || 'unbounded'}, eviction ${evictionPolicy}\n` +
      `  ${authSecret ? 'connections must authenticate (CLUSTER_SHM_AUTH)' : 'no secret: anyone who can open the socket may connect'}\n` +
      (options.persist ? `  snapshot ${path.resolve(options.persist)}: loaded at start, written on stop\n` : '') +
      `  use it with: CLUSTER_SHM_SOCKET=${broker.socket}\n`,
  );
}

/** This user's running brokers; a runtime directory that cannot be used is a runtime error. */
async function brokers() {
  const { liveBrokers } = require('../lib/runtime');
  try {
    return await liveBrokers();
  } catch (error) {
    fail(error.message);
  }
}

/**
 * The broker a command talks to: --pid or --name (its connection file gives
 * socket and secret), --socket (secret from --auth-file, CLUSTER_SHM_AUTH or
 * its connection file), CLUSTER_SHM_SOCKET, or the only one running.
 */
async function chooseBroker(flags) {
  const { runtimeDir } = require('../lib/runtime');
  if (flags.pid !== undefined || flags.name !== undefined) {
    if (flags.socket !== undefined) usage('give one of --pid, --name and --socket');
    if (flags.pid !== undefined && !/^\d+$/.test(flags.pid)) usage(`--pid takes a process id, not ${JSON.stringify(flags.pid)}`);
    const matching = (await brokers()).filter((b) => (flags.pid === undefined || b.pid === Number(flags.pid)) && (flags.name === undefined || b.name === flags.name));
    const which = flags.pid !== undefined ? `pid ${flags.pid}` : `name ${JSON.stringify(flags.name)}`;
    if (matching.length === 0) fail(`no running broker with ${which} in ${runtimeDir()} (cluster-shm ls lists them)`);
    if (matching.length > 1) usage(`${matching.length} brokers are named ${JSON.stringify(flags.name)} (pids ${matching.map((b) => b.pid).join(', ')}): choose one with --pid`);
    return { socket: matching[0].socket, secret: matching[0].secret || undefined };
  }
  const socket = flags.socket || process.env.CLUSTER_SHM_SOCKET;
  if (socket) {
    const resolved = path.resolve(socket);
    let secret = flags['auth-file'] !== undefined ? readSecret(flags['auth-file']) : process.env.CLUSTER_SHM_AUTH;
    if (!secret) secret = ((await brokers()).find((b) => b.socket === resolved) || {}).secret || undefined;
    return { socket: resolved, secret };
  }
  const running = await brokers();
  if (running.length === 0) fail(`no running broker found in ${runtimeDir()}: start your app or cluster-shm serve, or pass --socket`);
  if (running.length > 1) usage(`${running.length} brokers are running (pids ${running.map((b) => b.pid).join(', ')}): choose one with --pid or --name`);
  return { socket: running[0].socket, secret: running[0].secret || undefined };
}

/** A client of a running broker; a socket that is not there fails at once, saying where. */
function connect({ socket, secret }) {
  let stat;
  try {
    stat = fs.statSync(socket);
  } catch (error) {
    fail(`cannot reach a broker at ${socket}: ${error.code === 'ENOENT' ? 'no such file' : error.code || error.message}`);
  }
  if (!stat.isSocket()) fail(`cannot reach a broker at ${socket}: not a socket`);
  const { SharedMemory } = require('../lib/api');
  const { BrokerClientBackend } = require('../lib/backends');
  const connection = { socket, connectTimeout: 2000, commandTimeout: 5000, authSecret: secret };
  const backend = new BrokerClientBackend(() => connection);
  return new SharedMemory({ backend, role: 'client', socket });
}

const number = (n) => Number(n).toLocaleString('en-US');
const bytes = (n) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

async function list(args) {
  const { flags, positional } = parseFlags(args, [], ['--json']);
  if (positional.length) usage(`ls takes no argument ${JSON.stringify(positional[0])}`);
  const running = (await brokers()).map(({ pid, name, socket, argv, startedAt }) => ({ pid, name, socket, startedAt, command: argv.join(' ') }));
  if (flags.json) return process.stdout.write(`${JSON.stringify(running)}\n`);
  if (running.length === 0) return process.stdout.write('(no running broker)\n');
  const rows = [['PID', 'NAME', 'STARTED', 'SOCKET', 'COMMAND'], ...running.map((b) => [String(b.pid), b.name, b.startedAt, b.socket, b.command])];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  process.stdout.write(`${rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join('  ')).join('\n')}\n`);
}

const ARITY = { stats: [0, 0], keys: [0, 1], get: [1, 1], set: [2, 2], del: [1, Infinity], monitor: [0, 0] };

async function inspect(command, args) {
  const accepted = ['--socket', '--auth-file', '--pid', '--name', ...(command === 'monitor' ? ['--interval', '--count'] : []), ...(command === 'set' ? ['--ttl'] : [])];
  const { flags, positional } = parseFlags(args, accepted, ['--json', ...(command === 'set' ? ['--string'] : [])]);
  const [min, max] = ARITY[command];
  if (positional.length < min || positional.length > max) {
    usage(`${command} takes ${min === max ? min : max === Infinity ? `${min} or more` : `${min} to ${max}`} argument${max === 1 && min === 1 ? '' : 's'}, got ${positional.length}`);
  }
  const json = Boolean(flags.json);
  let ttl;
  if (flags.ttl !== undefined) {
    ttl = Number(flags.ttl);
    if (!Number.isSafeInteger(ttl) || ttl <= 0) usage(`--ttl takes a positive number of milliseconds, not ${JSON.stringify(flags.ttl)}`);
  }
  const interval = Number(flags.interval || 1000);
  const count = flags.count === undefined ? Infinity : Number(flags.count);
  if (!(interval >= 100) || !(count >= 1)) usage('--interval is at least 100 ms and --count at least 1');

  const shm = connect(await chooseBroker(flags));
  const print = (value, text) => process.stdout.write(`${json ? JSON.stringify(value) : text}\n`);
  try {
    if (command === 'stats') {
      const s = await shm.stats();
      print(
        s,
        [
          `cluster-shm ${s.version} at ${shm.socket}, up ${s.uptimeSeconds} s`,
          `  keys        ${number(s.keys)} (${number(s.keysWithTtl)} with a ttl)`,
          `  memory      ${bytes(s.usedMemory)} used, ${bytes(s.peakMemory)} peak, bound ${s.maxMemory ? bytes(s.maxMemory) : 'none'} (${s.evictionPolicy})`,
          `  process     ${bytes(s.residentMemory)} resident`,
          `  clients     ${number(s.connectedClients)}, ${number(s.lockWaiters)} waiting for locks, ${number(s.locksHeld)} locks held`,
          `  commands    ${number(s.totalCommands)}; hits ${number(s.keyspaceHits)}, misses ${number(s.keyspaceMisses)}`,
          `  reclaimed   ${number(s.expiredKeys)} expired, ${number(s.evictedKeys)} evicted`,
        ].join('\n'),
      );
    } else if (command === 'keys') {
      const keys = (await shm.keys(positional[0] || '*')).sort();
      print(keys, keys.join('\n') || '(no keys)');
    } else if (command === 'get') {
      const value = await shm.get(positional[0]);
      print(value === undefined ? null : value, value === undefined ? '(no such key)' : require('node:util').inspect(value, { depth: 8, colors: false }));
    } else if (command === 'set') {
      const [key, text] = positional;
      let value = text;
      if (!flags.string) {
        try {
          value = JSON.parse(text);
        } catch {
          // Not JSON: the text itself.
        }
      }
      await shm.set(key, value, ttl === undefined ? undefined : { ttl });
      print({ key, value }, 'OK');
    } else if (command === 'del') {
      let deleted = 0;
      for (const key of positional) if (await shm.delete(key)) deleted++;
      print({ deleted }, String(deleted));
    } else {
      let last = await shm.stats();
      let lastAt = Date.now();
      if (!json) process.stdout.write('   ops/s      keys     memory   clients  locks  evicted  expired\n');
      for (let line = 0; line < count; line++) {
        await new Promise((resolve) => setTimeout(resolve, interval));
        const now = await shm.stats();
        const at = Date.now();
        // The stats call itself is one command: do not count it.
        const opsPerSecond = Math.max(0, Math.round(((now.totalCommands - last.totalCommands - 1) * 1000) / (at - lastAt)));
        const row = { opsPerSecond, keys: now.keys, usedMemory: now.usedMemory, connectedClients: now.connectedClients, locksHeld: now.locksHeld, evictedKeys: now.evictedKeys, expiredKeys: now.expiredKeys };
        print(
          row,
          `${String(number(opsPerSecond)).padStart(8)} ${String(number(now.keys)).padStart(9)} ${bytes(now.usedMemory).padStart(10)} ${String(now.connectedClients).padStart(9)} ${String(now.locksHeld).padStart(6)} ${String(number(now.evictedKeys)).padStart(8)} ${String(number(now.expiredKeys)).padStart(8)}`,
        );
        [last, lastAt] = [now, at];
      }
    }
  } catch (error) {
    process.stderr.write(`cluster-shm: ${shm.socket}: ${error.message}${error.code ? ` (${error.code})` : ''}\n`);
    process.exitCode = 1;
  } finally {
    await shm.close();
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'serve') serve(rest);
else if (command === 'ls') list(rest);
else if (Object.hasOwn(ARITY, command)) inspect(command, rest);
else if (command === '--version' || command === '-v') process.stdout.write(`${require('../package.json').version}\n`);
else if (command === undefined || command === '--help' || command === '-h' || command === 'help') process.stdout.write(USAGE);
else usage(`unknown command ${JSON.stringify(command)}`);

#!/usr/bin/env node
'use strict';

/**
 * cluster-shm command line.
 *
 *   cluster-shm serve [--socket PATH] [--max-memory BYTES] [--max-keys N]
 *                     [--eviction-policy noeviction|allkeys-lru|volatile-ttl]
 *                     [--persist PATH] [--auth-file PATH]
 *
 *   cluster-shm stats | keys [PATTERN] | get KEY | monitor [--interval MS] [--count N]
 *               [--socket PATH] [--auth-file PATH] [--json]
 *
 * `serve` runs the broker as a process of its own, in the foreground, for
 * processes that have no cluster primary to host it (PM2 cluster mode,
 * separate node processes). Point them at it with CLUSTER_SHM_SOCKET.
 * The other commands inspect a running broker: the socket and secret come
 * from the flags or from CLUSTER_SHM_SOCKET / CLUSTER_SHM_AUTH.
 */

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const USAGE = `usage: cluster-shm serve|stats|keys|get|monitor ...

cluster-shm serve [--socket PATH] [--max-memory BYTES] [--max-keys N] [--eviction-policy POLICY] [--persist PATH] [--auth-file PATH]

  --socket PATH            where to listen (default: <tmp>/cluster-shm-<uid>/broker.sock)
  --max-memory BYTES       memory bound of the store (0: none); k, kb, m, mb, g, gb suffixes allowed
  --max-keys N             bound on the number of keys (0: none)
  --eviction-policy NAME   noeviction, allkeys-lru (default once a bound is set) or volatile-ttl
  --persist PATH           load this snapshot at start and write it on stop (and on SAVE)
  --auth-file PATH         connections must AUTH with the secret in this file (first line);
                           CLUSTER_SHM_AUTH in the environment does the same. Clients
                           pass the secret in CLUSTER_SHM_AUTH.

cluster-shm stats                  the broker's figures
cluster-shm keys [PATTERN]         keys matching a glob pattern (default *)
cluster-shm get KEY                a key's value, decoded as the API would
cluster-shm monitor                ops/s, memory, keys and clients every second
    [--interval MS] [--count N]    (until Ctrl-C, or N lines)
  common flags: --socket PATH (default CLUSTER_SHM_SOCKET), --auth-file PATH
  (default CLUSTER_SHM_AUTH), --json for machine-readable output
`;

function fail(message) {
  process.stderr.write(`cluster-shm: ${message}\n\n${USAGE}`);
  process.exit(2);
}

/** Parses `--name value` pairs against the names a command accepts. */
function parseFlags(args, accepted) {
  const flags = {};
  for (let i = 0; i < args.length; i += 2) {
    const name = args[i];
    if (!accepted.includes(name)) fail(`unknown option ${JSON.stringify(name)}`);
    if (i + 1 >= args.length) fail(`${name} needs a value`);
    flags[name.slice(2)] = args[i + 1];
  }
  return flags;
}

function parseBytes(text, name) {
  const match = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(text);
  if (!match) fail(`${name} must be a number of bytes, optionally with a unit (k, kb, m, mb, g, gb)`);
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
    fail(`cannot read --auth-file: ${error.code || error.message}`);
  }
  const secret = text.split(/\r?\n/, 1)[0].trim();
  if (!secret) fail('--auth-file holds no secret');
  return secret;
}

/** The default socket: in a directory of this user's that nobody else may enter. */
function defaultSocket() {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
  const dir = path.join(os.tmpdir(), `cluster-shm-${uid}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = fs.statSync(dir);
  if (typeof process.getuid === 'function' && (stat.uid !== process.getuid() || (stat.mode & 0o077) !== 0)) {
    fail(`${dir} must belong to you and be private (mode 0700); remove it or pass --socket`);
  }
  return path.join(dir, 'broker.sock');
}

function serve(args) {
  const flags = parseFlags(args, ['--socket', '--max-memory', '--max-keys', '--eviction-policy', '--persist', '--auth-file']);
  const native = require('../binding.js');
  const { SharedMemory, InProcessBackend } = require('../lib/api');
  const { validateOptions } = require('../lib/options');

  // Everything is checked before the broker starts, so a bad flag leaves nothing behind.
  const options = {};
  if (flags['max-memory'] !== undefined) options.maxMemory = parseBytes(flags['max-memory'], '--max-memory');
  if (flags['max-keys'] !== undefined) options.maxKeys = Number(flags['max-keys']);
  if (flags['eviction-policy'] !== undefined) options.evictionPolicy = flags['eviction-policy'];
  if (flags.persist !== undefined) options.persist = flags.persist;
  try {
    validateOptions(options);
  } catch (error) {
    fail(error.message);
  }
  const authSecret = readSecret(flags['auth-file']);
  const socket = path.resolve(flags.socket || defaultSocket());

  let broker;
  try {
    broker = native.Broker.start({ socket, authSecret });
  } catch (error) {
    fail(error.message.replace(/^ERR_SHM_[A-Z_]+ /, ''));
  }
  const shm = new SharedMemory({ backend: new InProcessBackend(broker), role: 'primary', socket: broker.socket });
  try {
    shm.configure(options);
  } catch (error) {
    broker.close();
    fail(error.message);
  }

  // The broker runs on its own threads; this keeps the process up until a signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  const stop = (signal) => {
    clearInterval(keepAlive);
    broker.close();
    process.stderr.write(`cluster-shm broker stopped (${signal}); ${broker.socket} removed\n`);
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const { maxMemory, maxKeys, evictionPolicy } = shm.options;
  process.stderr.write(
    `cluster-shm broker ${require('../package.json').version} listening on ${broker.socket}\n` +
      `  max memory ${maxMemory || 'unbounded'}, max keys ${maxKeys || 'unbounded'}, eviction ${evictionPolicy}\n` +
      `  ${authSecret ? 'connections must authenticate (CLUSTER_SHM_AUTH)' : 'no secret: anyone who can open the socket may connect'}\n` +
      (options.persist ? `  snapshot ${path.resolve(options.persist)}: loaded at start, written on stop\n` : '') +
      `  use it with: CLUSTER_SHM_SOCKET=${broker.socket}\n`,
  );
}

/** Splits `--json` and positional words from `--name value` flags. */
function splitArgs(args) {
  const positional = [];
  const rest = [];
  let json = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--json') json = true;
    else if (args[i].startsWith('--')) rest.push(args[i], args[++i]);
    else positional.push(args[i]);
  }
  return { positional, rest, json };
}

/** A client of a running broker, from flags or the environment. */
function connect(flags) {
  const socket = flags.socket || process.env.CLUSTER_SHM_SOCKET;
  if (!socket) fail('no broker: pass --socket PATH or set CLUSTER_SHM_SOCKET');
  const native = require('../binding.js');
  const { SharedMemory, RemoteBackend } = require('../lib/api');
  const authSecret = readSecret(flags['auth-file']);
  const connection = { socket: path.resolve(socket), connectTimeout: 2000, commandTimeout: 5000, authSecret };
  const backend = new RemoteBackend(
    () => connection,
    (onEvent) => native.Subscriber.connect(connection, onEvent),
  );
  return new SharedMemory({ backend, role: 'client', socket: connection.socket });
}

const number = (n) => Number(n).toLocaleString('en-US');
const bytes = (n) => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

async function inspect(command, args) {
  const { positional, rest, json } = splitArgs(args);
  const flags = parseFlags(rest, command === 'monitor' ? ['--socket', '--auth-file', '--interval', '--count'] : ['--socket', '--auth-file']);
  const shm = connect(flags);
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
      if (positional.length > 1) fail('keys takes at most one pattern');
      const keys = (await shm.keys(positional[0] || '*')).sort();
      print(keys, keys.join('\n') || '(no keys)');
    } else if (command === 'get') {
      if (positional.length !== 1) fail('get takes exactly one key');
      const value = await shm.get(positional[0]);
      print(value === undefined ? null : value, value === undefined ? '(no such key)' : require('node:util').inspect(value, { depth: 8, colors: false }));
    } else {
      const interval = Number(flags.interval || 1000);
      const count = flags.count === undefined ? Infinity : Number(flags.count);
      if (!(interval >= 100) || !(count >= 1)) fail('--interval is at least 100 ms and --count at least 1');
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
    process.stderr.write(`cluster-shm: ${error.message}${error.code ? ` (${error.code})` : ''}\n`);
    process.exitCode = 1;
  } finally {
    await shm.close();
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === 'serve') serve(rest);
else if (['stats', 'keys', 'get', 'monitor'].includes(command)) inspect(command, rest);
else if (command === undefined || command === '--help' || command === '-h') process.stdout.write(USAGE);
else fail(`unknown command ${JSON.stringify(command)}`);

#!/usr/bin/env node
'use strict';

/**
 * cluster-shm command line.
 *
 *   cluster-shm serve [--socket PATH] [--max-memory BYTES] [--max-keys N]
 *                     [--eviction-policy noeviction|allkeys-lru|volatile-ttl]
 *                     [--persist PATH] [--auth-file PATH]
 *
 * `serve` runs the broker as a process of its own, in the foreground, for
 * processes that have no cluster primary to host it (PM2 cluster mode,
 * separate node processes). Point them at it with CLUSTER_SHM_SOCKET.
 */

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const USAGE = `usage: cluster-shm serve [--socket PATH] [--max-memory BYTES] [--max-keys N] [--eviction-policy POLICY] [--persist PATH] [--auth-file PATH]

  --socket PATH            where to listen (default: <tmp>/cluster-shm-<uid>/broker.sock)
  --max-memory BYTES       memory bound of the store (0: none); k, kb, m, mb, g, gb suffixes allowed
  --max-keys N             bound on the number of keys (0: none)
  --eviction-policy NAME   noeviction, allkeys-lru (default once a bound is set) or volatile-ttl
  --persist PATH           load this snapshot at start and write it on stop (and on SAVE)
  --auth-file PATH         connections must AUTH with the secret in this file (first line);
                           CLUSTER_SHM_AUTH in the environment does the same. Clients
                           pass the secret in CLUSTER_SHM_AUTH.
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

const [command, ...rest] = process.argv.slice(2);
if (command === 'serve') serve(rest);
else if (command === undefined || command === '--help' || command === '-h') process.stdout.write(USAGE);
else fail(`unknown command ${JSON.stringify(command)}`);

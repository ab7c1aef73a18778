'use strict';

/**
 * cluster-shm: `require('cluster-shm')` in the primary and in every worker.
 *
 * - In a process with CLUSTER_SHM_URL set, calls go to that Redis or
 *   Valkey server (or Redis Cluster); no broker is started.
 * - In a process with CLUSTER_SHM_SOCKET set (cluster workers forked by a
 *   primary that required this module, or any process pointed at a
 *   standalone broker), calls go over the socket to that broker,
 *   authenticated with CLUSTER_SHM_AUTH.
 * - In a cluster worker without it, every call rejects with
 *   ERR_SHM_NO_BROKER: the primary never required cluster-shm.
 * - Anywhere else (a cluster primary, a plain script), this process starts
 *   the broker and serves its own calls in-process.
 */

const cluster = require('node:cluster');
const { randomBytes } = require('node:crypto');
const native = require('./lib/native').load();
const { SharedMemory } = require('./lib/api');
const { InProcessBackend, BrokerClientBackend, RedisBackend, FailedBackend } = require('./lib/backends');
const { CODES, ShmError, shmError, fromNative, typeError } = require('./lib/errors');
const { ENV, inheritedOptions, validateOptions } = require('./lib/options');
const { announce } = require('./lib/runtime');
const { attachLocalStore } = require('./lib/local-store');

/**
 * How a handle is made: the process's own one (`require('cluster-shm')`)
 * takes its role from the cluster and hands configured options down to
 * workers; one from connect() is a plain client.
 */
const OWN = { role: cluster.isWorker ? 'worker' : 'client', onConfigure: handDownOptions };
const CONNECTED = { role: 'client', onConfigure: undefined };

/** `authSecret`: null for none (undefined takes the inherited one). */
function remote(socket, options, { role, onConfigure } = OWN, authSecret = process.env[ENV.AUTH] || null) {
  let shm;
  const connection = () => {
    const { connectTimeout, commandTimeout } = shm.options;
    return { socket, connectTimeout, commandTimeout, authSecret: authSecret || undefined };
  };
  const backend = new BrokerClientBackend(connection, process.env[ENV.LOCAL_STORE] === '0' ? null : (options) => attachLocalStore(native, options));
  shm = new SharedMemory({ backend, role, socket, options, onConfigure });
  return shm;
}

/** A cluster primary hands the options it configures down to the workers it forks next. */
function handDownOptions(current) {
  if (cluster.isPrimary) process.env[ENV.OPTIONS] = JSON.stringify(current);
}

function redis(target, options, { role, onConfigure } = OWN) {
  let shm;
  let backend;
  try {
    backend = new RedisBackend(target, () => {
      const { connectTimeout, commandTimeout } = shm.options;
      return { connectTimeout, commandTimeout };
    });
  } catch (error) {
    backend = new FailedBackend(error);
  }
  shm = new SharedMemory({ backend, role, options, onConfigure });
  return shm;
}

/**
 * A separate handle on another store: `{ socket, auth? }` (a standalone
 * broker), `{ url }` (Redis or Valkey) or `{ cluster: [{ host, port }, …] }`
 * (Redis Cluster), with its own options.
 */
function connect(target, options = {}) {
  if (target === null || typeof target !== 'object' || Array.isArray(target)) {
    throw typeError('connect: the target must be { socket }, { url } or { cluster: [...] }');
  }
  const kinds = ['socket', 'url', 'cluster'].filter((name) => target[name] !== undefined);
  if (kinds.length !== 1) throw typeError(`connect: give exactly one of socket, url or cluster (got ${kinds.join(', ') || 'none'})`, CODES.INVALID_ARG_VALUE);
  const known = { socket: ['socket', 'auth'], url: ['url'], cluster: ['cluster', 'redisOptions'] }[kinds[0]];
  for (const name of Object.keys(target)) {
    if (!known.includes(name)) throw typeError(`connect: unknown target field "${name}" (known: ${known.join(', ')})`, CODES.UNKNOWN_OPTION);
  }
  validateOptions(options);
  if (target.socket !== undefined) {
    if (typeof target.socket !== 'string' || target.socket === '') throw typeError('connect: socket must be a path');
    if (target.auth !== undefined && typeof target.auth !== 'string') throw typeError('connect: auth must be a string');
    // The inherited secret belongs to the inherited socket, not to any other.
    const inherited = target.socket === process.env[ENV.SOCKET] ? process.env[ENV.AUTH] || null : null;
    return remote(target.socket, options, CONNECTED, target.auth ?? inherited);
  }
  if (target.url !== undefined) {
    if (typeof target.url !== 'string') throw typeError('connect: url must be a string');
    return redis(target.url, options, CONNECTED);
  }
  if (!Array.isArray(target.cluster) || target.cluster.length === 0) throw typeError('connect: cluster must be a list of { host, port }');
  return redis({ cluster: target.cluster, redisOptions: target.redisOptions }, options, CONNECTED);
}

function noBroker() {
  const error = shmError(
    CODES.NO_BROKER,
    'cluster-shm has no broker in this worker: the cluster primary did not load cluster-shm before forking. ' +
      "Add require('cluster-shm') to the primary before cluster.fork(), " +
      `or set ${ENV.SOCKET} to the socket of a standalone broker.`,
  );
  return new SharedMemory({ backend: new FailedBackend(error), role: 'worker' });
}

/**
 * Stops the broker; false when its final snapshot could not be written,
 * which is logged and makes the process exit with code 1, so that a
 * supervisor can tell the data of this run was not kept.
 */
function closeBroker(backend) {
  try {
    backend.close();
    return true;
  } catch (error) {
    process.stderr.write(`cluster-shm: ${fromNative(error).message}\n`);
    process.exitCode = process.exitCode || 1;
    return false;
  }
}

/** Removes the socket on exit, and on the signals that end a process by default. */
function cleanUpOnExit(backend) {
  process.on('exit', () => closeBroker(backend));
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    const onSignal = () => {
      // Another listener owns this signal and will exit as it sees fit; the
      // exit handler cleans up then.
      if (process.listenerCount(signal) > 1) return;
      if (!closeBroker(backend)) process.exit();
      process.removeListener(signal, onSignal);
      process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

function primary(options) {
  // Every connection must present this secret: a process of the same user
  // that was not given it cannot read or write.
  const authSecret = randomBytes(32).toString('hex');
  let broker;
  try {
    broker = native.Broker.start({ authSecret });
  } catch (error) {
    return new SharedMemory({ backend: new FailedBackend(fromNative(error)), role: 'primary', options });
  }
  // Listed for `cluster-shm ls` and the other commands, until the broker closes.
  const backend = new InProcessBackend(native, broker, { onClose: announce({ socket: broker.socket, secret: authSecret }) || undefined });
  let shm;
  try {
    shm = new SharedMemory({
      backend,
      role: 'primary',
      socket: broker.socket,
      options,
      onConfigure: handDownOptions,
    });
  } catch (error) {
    // Inherited options the broker refuses (a damaged persist snapshot):
    // as with a broker that cannot start, calls reject, require() does not throw.
    backend.close();
    return new SharedMemory({ backend: new FailedBackend(error), role: 'primary', options });
  }
  cleanUpOnExit(backend);
  // Everything forked from here on (cluster workers, child processes) finds
  // the broker through the environment.
  process.env[ENV.SOCKET] = broker.socket;
  process.env[ENV.AUTH] = authSecret;
  return shm;
}

function create() {
  const options = inheritedOptions();
  const url = process.env[ENV.URL];
  if (url) return redis(url, options);
  const socket = process.env[ENV.SOCKET];
  if (socket) return remote(socket, options);
  if (cluster.isWorker) return noBroker();
  return primary(options);
}

const shm = create();

module.exports = shm;
module.exports.default = shm;
module.exports.connect = connect;
module.exports.ShmError = ShmError;

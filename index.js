'use strict';

/**
 * cluster-shm: `require('cluster-shm')` in the primary and in every worker.
 *
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
const native = require('./binding.js');
const { SharedMemory, InProcessBackend, RemoteBackend, FailedBackend } = require('./lib/api');
const { CODES, shmError, fromNative } = require('./lib/errors');
const { ENV, inheritedOptions } = require('./lib/options');

function remote(socket, options) {
  const role = cluster.isWorker ? 'worker' : 'client';
  let shm;
  const authSecret = process.env[ENV.AUTH] || undefined;
  const connection = () => {
    const { connectTimeout, commandTimeout } = shm.options;
    return { socket, connectTimeout, commandTimeout, authSecret };
  };
  const backend = new RemoteBackend(
    connection,
    () => new native.Client(connection()),
    (onEvent) => native.Subscriber.connect(connection(), onEvent),
  );
  shm = new SharedMemory({ backend, role, socket, options });
  return shm;
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

/** Removes the socket on exit, and on the signals that end a process by default. */
function cleanUpOnExit(broker) {
  process.on('exit', () => broker.close());
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    const onSignal = () => {
      // Another listener owns this signal and will exit as it sees fit; the
      // exit handler cleans up then.
      if (process.listenerCount(signal) > 1) return;
      broker.close();
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
  cleanUpOnExit(broker);
  // Everything forked from here on (cluster workers, child processes) finds
  // the broker through the environment.
  process.env[ENV.SOCKET] = broker.socket;
  process.env[ENV.AUTH] = authSecret;
  return new SharedMemory({
    backend: new InProcessBackend(broker),
    role: 'primary',
    socket: broker.socket,
    options,
    onConfigure(current) {
      process.env[ENV.OPTIONS] = JSON.stringify(current);
    },
  });
}

function create() {
  const options = inheritedOptions();
  const socket = process.env[ENV.SOCKET];
  if (socket) return remote(socket, options);
  if (cluster.isWorker) return noBroker();
  return primary(options);
}

const shm = create();

module.exports = shm;
module.exports.default = shm;
module.exports.codes = CODES;

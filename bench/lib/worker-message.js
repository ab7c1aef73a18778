'use strict';

/**
 * Resolves with the first message `{ [channel]: type }` from a cluster
 * `worker`; rejects if the worker reports `{ [channel]: 'error' }` or exits
 * first. bench/primary.js talks to its workers on 'bench', bench/profile.js
 * on 'profile'.
 */
function workerMessage(worker, channel, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (message) => {
      if (!message || message[channel] === undefined) return;
      if (message[channel] === 'error') {
        cleanup();
        reject(new Error(`worker ${worker.process.pid}: ${message.error}`));
      } else if (message[channel] === type) {
        cleanup();
        resolve(message);
      }
    };
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`worker ${worker.process.pid} exited (${code ?? signal}) while the primary waited for '${type}'`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('exit', onExit);
  });
}

module.exports = { workerMessage };

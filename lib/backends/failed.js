'use strict';

const CAPABILITIES = Object.freeze({ hostsBroker: false, ownsServer: true, leaseLocks: false, cluster: false, nearCache: false, mappedStore: false });

/**
 * A backend that can only fail, with the reason it was given (no broker in
 * this worker, a broker that could not start, a Redis target that does not
 * parse). See index.js for the contract.
 */
class FailedBackend {
  capabilities = CAPABILITIES;
  db = 0;
  onEvent = () => {};

  constructor(error) {
    this.error = error;
  }

  call() {
    throw this.error;
  }

  callForText() {
    throw this.error;
  }

  callBlocking() {
    throw this.error;
  }

  createSubscriber() {
    throw this.error;
  }

  reset() {}

  close() {}
}

module.exports = { FailedBackend };

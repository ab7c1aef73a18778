'use strict';

const { fromNative } = require('../errors');

const CAPABILITIES = Object.freeze({ hostsBroker: true, ownsServer: true, leaseLocks: false, cluster: false, nearCache: false, mappedStore: false });

/**
 * Runs commands against the store in this process (a cluster primary,
 * `cluster-shm serve`): the broker is the native addon's, on its own
 * threads. See index.js for the contract.
 */
class InProcessBackend {
  capabilities = CAPABILITIES;
  db = 0;
  onEvent = () => {};

  /** `onClose`: called once the broker is closed (the primary removes its connection file). */
  constructor(broker, { onClose = () => {} } = {}) {
    this.broker = broker;
    this.onClose = onClose;
  }

  call(args) {
    try {
      return this.broker.call(args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** Runs a command whose bulk strings come back as strings. */
  callForText(args) {
    try {
      return this.broker.callText(args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** A blocking command comes back as a Promise from the broker's threads. */
  async callBlocking(args) {
    try {
      return await this.broker.call(args);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** Subscriptions registered in the store itself, delivered to this thread. */
  createSubscriber(onEvent) {
    return this.broker.subscriber(onEvent);
  }

  /** Loads the snapshot at `path` and saves there when the broker closes. */
  persist(path) {
    try {
      return this.broker.persist(path);
    } catch (error) {
      throw fromNative(error);
    }
  }

  /** Nothing to do: in-process calls have no timeouts. */
  reset() {}

  close() {
    try {
      this.broker.close();
    } catch (error) {
      throw fromNative(error);
    } finally {
      this.onClose();
    }
  }
}

module.exports = { InProcessBackend };

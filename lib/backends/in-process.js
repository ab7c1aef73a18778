'use strict';

const { fromNative } = require('../errors');
const { LocalStore } = require('../local-store');

const CAPABILITIES = Object.freeze({ hostsBroker: true, ownsServer: true, leaseLocks: false, cluster: false, nearCache: false, mappedStore: true });

/**
 * Runs commands against the store in this process (a cluster primary,
 * `cluster-shm serve`): the broker is the native addon's, on its own
 * threads. `get` and `set` take the path a worker's take, on the store
 * itself (lib/local-store.js), and fall back to the broker as a worker's
 * do. See index.js for the contract.
 */
class InProcessBackend {
  capabilities = CAPABILITIES;
  db = 0;
  onEvent = () => {};

  /** `onClose`: called once the broker is closed (the primary removes its connection file). */
  constructor(native, broker, { onClose = () => {} } = {}) {
    this.broker = broker;
    this.onClose = onClose;
    this.store = new LocalStore(native, broker.localId);
  }

  /** SET run on the store in this process: its reply, or NOT_LOCAL when the broker must run it. */
  writeLocal(key, value) {
    return this.store.write(key, value);
  }

  /** GET run on the store in this process, decoded at once (see readLocal in ./index.js), or NOT_LOCAL. */
  readLocal(key, decode) {
    return this.store.readDecoded(key, decode);
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

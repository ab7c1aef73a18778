'use strict';

const { fromNative } = require('../errors');
const { Connection } = require('../connection');

const CAPABILITIES = Object.freeze({ hostsBroker: false, ownsServer: true, leaseLocks: false, cluster: false, nearCache: false });

/**
 * A broker another process hosts (cluster workers, `connect({ socket })`,
 * the command line): data commands run on its store, mapped into this
 * process; everything else goes over its socket, on one pipelined
 * connection driven from the JS thread (lib/connection.js). Lock waits
 * share it too: the broker queues them without blocking the connection and
 * pushes each one's outcome. See index.js for the contract.
 */
class BrokerClientBackend {
  capabilities = CAPABILITIES;
  db = 0;

  /**
   * `attachStore(options)`: maps the broker's store into this process
   * (native LocalStore.attach), or throws why it cannot.
   */
  constructor(connectionOptions, createSubscriber, attachStore = null) {
    this.connectionOptions = connectionOptions;
    this.createSubscriber = createSubscriber;
    this.attachStore = attachStore;
    this.connection = null;
    /** The broker's store mapped here: undefined until first tried, null when it cannot be. */
    this.store = attachStore === null ? null : undefined;
    /** Why the store is not mapped here, when it is not. */
    this.storeError = attachStore === null ? 'not offered' : null;
    /** Calls the store sent back, still in flight on the connection. */
    this.forwarded = 0;
    /** Where the store's reads are copied (see #get). */
    this.scratch = attachStore === null ? null : Buffer.allocUnsafeSlow(64 * 1024);
    /** Set by the handle: hears 'error' and 'reconnect' from the connection. */
    this.onEvent = () => {};
  }

  /**
   * A data command runs in this process on the mapped store, with no round
   * trip; the store sends back anything it must not run itself (see
   * LocalStore.call), and that goes over the socket. While a call the store
   * sent back is in flight there, data commands follow it over the socket,
   * so that calls keep their order.
   */
  call(args) {
    const store = this.store === undefined ? this.#attach() : this.store;
    if (store !== null && this.forwarded === 0) {
      let reply;
      try {
        reply = args.length === 2 && args[0] === 'GET' ? this.#get(store, args[1]) : store.call(args);
      } catch (error) {
        return Promise.reject(fromNative(error));
      }
      if (reply !== undefined) return Promise.resolve(reply);
    }
    if (store === null) return this.#connection().call(args);
    this.forwarded += 1;
    const settled = () => {
      this.forwarded -= 1;
    };
    const sent = this.#connection().call(args);
    sent.then(settled, settled);
    return sent;
  }

  /**
   * GET through the store's copy-into-a-buffer read: no native Buffer per
   * read (each costs a malloc'd backing store and GC work); the copy out of
   * the scratch buffer comes from Node's pool. Undefined: ask the broker.
   */
  #get(store, key) {
    const found = store.get([key], this.scratch);
    if (typeof found !== 'number') return found;
    if (found === -1) return null;
    if (found < 0) return undefined;
    return Buffer.from(this.scratch.subarray(0, found));
  }

  #attach() {
    try {
      this.store = this.attachStore(this.connectionOptions());
      this.storeError = null;
      // The process's connection names the slot it took: when it closes with
      // the process gone, the broker repairs what the process left. It
      // carries everything but data commands, and its loss is what 'error'
      // and 'reconnect' report.
      this.#connection().call(['SHM.SLOT', String(this.store.slot)]).catch(() => {});
    } catch (error) {
      this.store = null;
      this.storeError = String(error.message || error);
    }
    return this.store;
  }

  /** The process's connection to the broker, made on first use; it tells `onEvent` what happens to it. */
  #connection() {
    if (this.connection === null) {
      this.connection = new Connection(this.connectionOptions(), (name, detail) => {
        // A new broker has a new store: map it on the next call.
        if (name === 'reconnect' && this.attachStore !== null && this.storeError !== 'closed') {
          if (this.store) this.store.close();
          this.store = undefined;
        }
        this.onEvent(name, detail);
      });
    }
    return this.connection;
  }

  /** Sends a command whose bulk strings come back as strings. */
  callForText(args) {
    return this.#connection().callForText(args);
  }

  /** A lock wait (`SHM.LOCK … WAIT ms`): resolves with the fencing token, or null when it timed out. */
  callBlocking(args, waitMs) {
    return this.#connection().waitForLock(args, waitMs);
  }

  /** New timeouts apply from the next call on. */
  reset() {
    if (this.connection) this.connection.options = this.connectionOptions();
  }

  close() {
    if (this.store) this.store.close();
    this.store = null;
    this.storeError = 'closed';
    this.#connection().close();
  }
}

module.exports = { BrokerClientBackend };

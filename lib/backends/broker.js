'use strict';

const { CODES } = require('../errors');
const { Connection } = require('../connection');
const { NOT_LOCAL } = require('../local-store');

const CAPABILITIES = Object.freeze({ hostsBroker: false, ownsServer: true, leaseLocks: false, cluster: false, nearCache: false, mappedStore: true });

/**
 * A broker another process hosts (cluster workers, `connect({ socket })`,
 * the command line): data commands run on its store, mapped into this
 * process; everything else goes over its socket, on one pipelined
 * connection driven from the JS thread (lib/connection.js). Lock waits and
 * subscriptions share it too: the broker queues a lock wait without
 * blocking the connection and pushes its outcome, and pushes pub/sub
 * messages. See index.js for the contract.
 */
class BrokerClientBackend {
  capabilities = CAPABILITIES;
  db = 0;

  /**
   * `attachStore(options)`: maps the broker's store into this process
   * (native LocalStore.attach), or throws why it cannot.
   */
  constructor(connectionOptions, attachStore = null) {
    this.connectionOptions = connectionOptions;
    this.attachStore = attachStore;
    this.connection = null;
    /** The broker's store mapped here: undefined until first tried, null when it cannot be. */
    this.store = attachStore === null ? null : undefined;
    /** Why the store is not mapped here, when it is not. */
    this.storeError = attachStore === null ? 'not offered' : null;
    /** Calls the store sent back, still in flight on the connection. */
    this.forwarded = 0;
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
        if (args.length === 2 && args[0] === 'GET') reply = store.read(args[1]);
        else if (args.length === 3 && args[0] === 'SET') reply = store.write(args[1], args[2]);
        else reply = store.call(args);
      } catch (error) {
        return Promise.reject(error);
      }
      if (reply !== NOT_LOCAL) return Promise.resolve(reply);
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

  /** SET on the mapped store: its reply, or NOT_LOCAL when the broker must run it (see call()). */
  writeLocal(key, value) {
    const store = this.#local();
    return store === null ? NOT_LOCAL : store.write(key, value);
  }

  /** GET on the mapped store, decoded at once (see readLocal in ./index.js), or NOT_LOCAL. */
  readLocal(key, decode) {
    const store = this.#local();
    return store === null ? NOT_LOCAL : store.readDecoded(key, decode);
  }

  /** The mapped store when a data command may run on it now, else null. */
  #local() {
    const store = this.store === undefined ? this.#attach() : this.store;
    return this.forwarded === 0 ? store : null;
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

  /** The process's subscriptions, on its connection. */
  createSubscriber(onEvent) {
    return new BrokerSubscriber(this.#connection(), onEvent);
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

/** The longest pause between attempts to restore subscriptions, in ms. */
const RESTORE_DELAY_MAX = 1_000;

/**
 * The process's subscriptions, on its one connection to the broker, which
 * keeps running calls meanwhile: the connection asks for pushes on every
 * socket (SHM.PUSHES ON), and the broker pushes each message. Each
 * (UN)SUBSCRIBE names one channel, so that it gets one reply.
 *
 * When the socket is lost, the subscriptions are made again on the next
 * one, tried at once and then with a growing pause until the broker is
 * back; then the listeners are told they may have missed messages
 * ('reconnected'). A process that falls behind is not cut off (that would
 * take its calls and locks along): the broker drops messages past the
 * output limit and says so before the next one ('overflow').
 */
class BrokerSubscriber {
  #connection;
  #onEvent;
  /** What this process subscribes to, by kind: what a new socket gets. */
  #wanted = { channel: new Set(), pattern: new Set() };
  /** Set when a socket was lost: the subscriptions are to be made again. */
  #stale = false;
  #restoring = false;
  #closed = false;

  constructor(connection, onEvent) {
    this.#connection = connection;
    this.#onEvent = onEvent;
    connection.onPush = (items) => this.#onPush(items);
    connection.onLost = () => {
      if (this.#wanted.channel.size + this.#wanted.pattern.size === 0) return;
      this.#stale = true;
      // After the calls the socket took along have failed: a subscribe among
      // them is then no longer wanted.
      if (!this.#restoring) setImmediate(() => this.#restore());
      this.#restoring = true;
    };
  }

  async subscribe(kind, [name]) {
    this.#wanted[kind].add(name);
    try {
      await this.#connection.call([kind === 'pattern' ? 'PSUBSCRIBE' : 'SUBSCRIBE', name]);
    } catch (error) {
      // Not subscribed: not to be made again on a new socket either.
      this.#wanted[kind].delete(name);
      throw error;
    }
  }

  async unsubscribe(kind, [name]) {
    this.#wanted[kind].delete(name);
    try {
      await this.#connection.call([kind === 'pattern' ? 'PUNSUBSCRIBE' : 'UNSUBSCRIBE', name]);
    } catch (error) {
      // A lost socket took the subscription with it, and the next one will
      // not get it.
      if (error.code !== CODES.UNREACHABLE) throw error;
    }
  }

  #onPush([kind, ...rest]) {
    if (this.#closed) return;
    switch (String(kind)) {
      case 'message':
        this.#onEvent({ kind: 'message', channel: rest[0], payload: rest[1] });
        break;
      case 'pmessage':
        this.#onEvent({ kind: 'pmessage', pattern: rest[0], channel: rest[1], payload: rest[2] });
        break;
      case 'shm.missed':
        this.#onEvent({ kind: 'missed', reason: String(rest[0]) });
        break;
    }
  }

  /** Makes every subscription again, until one socket holds them all; then tells the listeners. */
  async #restore() {
    let delay = 20;
    while (this.#stale && !this.#closed) {
      this.#stale = false;
      const subscribing = [...this.#wanted.channel].map((name) => this.#connection.call(['SUBSCRIBE', name]));
      subscribing.push(...[...this.#wanted.pattern].map((name) => this.#connection.call(['PSUBSCRIBE', name])));
      try {
        await Promise.all(subscribing);
      } catch (error) {
        if (error.code === CODES.CLOSED) break;
        this.#stale = true;
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
        delay = Math.min(delay * 2, RESTORE_DELAY_MAX);
        continue;
      }
      // Lost again meanwhile: that socket's subscriptions are gone too.
      if (!this.#stale && !this.#closed) this.#onEvent({ kind: 'missed', reason: 'reconnected' });
    }
    this.#restoring = false;
  }

  /**
   * Stops delivery at once. The broker forgets the subscriptions when the
   * connection closes, which the handle's close() does next.
   */
  close() {
    this.#closed = true;
    this.#wanted.channel.clear();
    this.#wanted.pattern.clear();
  }
}

module.exports = { BrokerClientBackend, NOT_LOCAL };

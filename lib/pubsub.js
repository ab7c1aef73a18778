'use strict';

const { decode } = require('./codec');
const { CODES, fromNative, shmError } = require('./errors');
const { InOrder } = require('./in-order');


/**
 * The listeners of one process, multiplexed over the subscriber its backend
 * makes (lib/backends/index.js): the server sees one subscription per
 * channel or pattern however many listeners share it.
 */
class PubSubHub {
  #createSubscriber;
  #subscriber = null;
  #closed = false;
  /** kind -> name -> { listeners: Set, ready: Promise } */
  #subscriptions = { channel: new Map(), pattern: new Map() };
  /**
   * Subscribes and unsubscribes of one name run one after another: the
   * subscriber runs them as separate tasks that could otherwise reach the
   * server out of order.
   */
  #changes = new InOrder();

  #keyspacePrefix;

  /** `db`: the database whose keyspace events watch() listens to. */
  constructor(createSubscriber, db = 0) {
    this.#createSubscriber = createSubscriber;
    this.#keyspacePrefix = `__keyspace@${db}__:`;
  }

  /** The channel of the keyspace events of `key` (or of the keys a pattern matches). */
  keyspaceChannel(key) {
    return this.#keyspacePrefix + key;
  }

  #openSubscriber() {
    // A change queued before close() runs after it: it must not open a new connection.
    if (this.#closed) throw shmError(CODES.CLOSED, 'the cluster-shm connection is closed');
    if (this.#subscriber === null) this.#subscriber = this.#createSubscriber((event) => this.#dispatch(event));
    return this.#subscriber;
  }

  /** Adds a listener; resolves with its unsubscribe function once the broker delivers to it. */
  async add(kind, name, entry) {
    const table = this.#subscriptions[kind];
    let subscription;
    // Joining a subscription that its last listener left meanwhile would
    // attach to nothing: start over until the one joined is still current.
    do {
      if (this.#closed) throw shmError(CODES.CLOSED, 'the cluster-shm connection is closed');
      subscription = table.get(name);
      if (!subscription) {
        const created = { listeners: new Set(), ready: null };
        created.ready = this.#after(kind, name, () => this.#openSubscriber().subscribe(kind, [name]))
          .catch((error) => {
            if (table.get(name) === created) table.delete(name);
            throw fromNative(error);
          });
        table.set(name, created);
        subscription = created;
      }
      await subscription.ready;
    } while (table.get(name) !== subscription);
    subscription.listeners.add(entry);
    let removed = false;
    return async () => {
      if (removed) return;
      removed = true;
      subscription.listeners.delete(entry);
      if (subscription.listeners.size === 0 && table.get(name) === subscription) {
        table.delete(name);
        await this.#after(kind, name, () => this.#openSubscriber().unsubscribe(kind, [name])).catch((error) => {
          throw fromNative(error);
        });
      }
    };
  }

  /** Runs `change` once the previous change of the same subscription is done. */
  #after(kind, name, change) {
    return this.#changes.run(`${kind}\0${name}`, change);
  }

  #dispatch(event) {
    if (event.kind === 'missed') {
      for (const table of Object.values(this.#subscriptions)) {
        for (const { listeners } of table.values()) {
          for (const entry of listeners) if (entry.onMissed) call(entry.onMissed, { reason: event.reason });
        }
      }
      return;
    }
    const channel = event.channel.toString();
    const subscription =
      event.kind === 'pmessage' ? this.#subscriptions.pattern.get(event.pattern.toString()) : this.#subscriptions.channel.get(channel);
    if (!subscription) return;
    let message;
    for (const entry of subscription.listeners) {
      if (entry.keyEvents) {
        call(entry.listener, { key: channel.slice(this.#keyspacePrefix.length), event: event.payload.toString() });
      } else {
        if (message === undefined) message = decode(event.payload);
        call(entry.listener, message, channel);
      }
    }
  }

  close() {
    this.#closed = true;
    if (this.#subscriber) this.#subscriber.close();
    this.#subscriber = null;
    this.#subscriptions.channel.clear();
    this.#subscriptions.pattern.clear();
  }
}

/** A listener that throws does not stop the others; its error surfaces as an uncaught exception, as with EventEmitter. */
function call(fn, ...args) {
  try {
    fn(...args);
  } catch (error) {
    process.nextTick(() => {
      throw error;
    });
  }
}

module.exports = { PubSubHub };

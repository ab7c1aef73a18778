'use strict';

/**
 * The connection a process uses for ordinary calls to a broker it does not
 * host: RESP over the Unix socket, driven from the JS thread.
 *
 * Measured on the 2-core machine the project is built on, a call through a
 * native client costs two extra thread wake-ups (the client's I/O thread,
 * then the JS thread again), which doubled the round-trip time; doing the
 * socket I/O on the JS thread, as Node does for any socket, avoids both.
 * Calls issued in the same tick leave in one write (automatic pipelining);
 * replies are matched to calls in order.
 */

const net = require('node:net');
const { trustedSocketPath } = require('./native').load();
const { CODES, shmError, fromNative } = require('./errors');
const { encodeCommand, writeCommands, ReplyParser, ReplyError, Push } = require('./resp');

const AUTH_REPLY = /^(NOAUTH|WRONGPASS) /;

/** Connect errors that say this process (or the system) ran out of something, and of what. */
const OUT_OF = {
  EMFILE: 'open files (its limit: ulimit -n)',
  ENFILE: 'open files (the system-wide limit)',
  ENOBUFS: 'buffer space',
  ENOMEM: 'memory',
};

class Connection {
  /**
   * @param {{ socket: string, connectTimeout: number, commandTimeout: number, authSecret?: string }} options
   */
  /**
   * `onEvent(name, detail)` hears what the handle emits: 'error' when the
   * connection is lost or cannot be made, 'reconnect' when a new one is
   * made after one was lost.
   */
  constructor(options, onEvent = () => {}) {
    this.options = options;
    this.onEvent = onEvent;
    /** Sockets attached so far: a second one is a reconnection. */
    this.attached = 0;
    this.socket = null;
    this.connecting = null;
    /** Calls written and waiting for their reply, in order. */
    this.inFlight = [];
    /** Calls waiting for the connection, or for the next write. */
    this.outbox = [];
    this.writeQueued = false;
    this.closed = false;
    this.timer = null;
    /** Lock waits queued in the broker, by token: their outcome comes as a push. */
    this.lockWaits = new Map();
    /**
     * Set by the process's subscriber (lib/backends/broker.js), whose
     * subscriptions share this connection: `onPush(items)` hears the pushes
     * that are not lock outcomes (pub/sub messages), `onLost()` that a
     * socket was lost, and its subscriptions with it.
     */
    this.onPush = () => {};
    this.onLost = () => {};
    this.write = () => this.#write();
    this.checkTimeouts = () => this.#checkTimeouts();
  }

  /** Sends a command; resolves with its reply (bulk strings as strings when `text`). */
  call(args, text = false) {
    if (this.closed) return Promise.reject(shmError(CODES.CLOSED, 'the cluster-shm connection is closed'));
    return new Promise((resolve, reject) => {
      this.outbox.push({ payload: encodeCommand(args), resolve, reject, deadline: 0, settled: false, text });
      this.#watchTimeouts();
      if (this.socket) {
        if (!this.writeQueued) {
          this.writeQueued = true;
          queueMicrotask(this.write);
        }
      } else if (!this.connecting) {
        this.connecting = this.#connect();
      }
    });
  }

  /** Sends a command whose bulk strings come back as strings (KEYS). */
  callForText(args) {
    return this.call(args, true);
  }

  /**
   * A lock wait (`SHM.LOCK name token ttl WAIT ms`) that does not block this
   * connection: with ASYNC the broker replies at once, and the outcome of a
   * wait it queued comes later as a push. Any number of waits share the
   * connection, and the locks they get belong to it, as those taken without
   * waiting do. Resolves with the fencing token, or null when the wait timed
   * out in the broker; rejects with ERR_SHM_TIMEOUT when the broker says
   * nothing within the wait and commandTimeout.
   */
  waitForLock(args, waitMs) {
    const token = String(args[2]);
    return new Promise((resolve, reject) => {
      const wait = { resolve, reject, timer: null };
      this.lockWaits.set(token, wait);
      const settled = () => this.lockWaits.get(token) !== wait;
      const end = () => {
        clearTimeout(wait.timer);
        if (this.lockWaits.get(token) === wait) this.lockWaits.delete(token);
      };
      wait.resolve = (fence) => {
        end();
        resolve(fence);
      };
      wait.reject = (error) => {
        end();
        reject(error);
      };
      this.call([...args, 'ASYNC']).then((reply) => {
        if (settled()) return; // its outcome came first
        if (reply !== 'QUEUED') return wait.resolve(reply);
        wait.timer = setTimeout(
          () => wait.reject(shmError(CODES.TIMEOUT, `no reply from the broker within ${this.options.commandTimeout} ms after the lock wait of ${waitMs} ms`)),
          waitMs + this.options.commandTimeout,
        );
      }, wait.reject);
    });
  }

  #onPush(items) {
    const [kind, , token, fence] = items;
    if (!Buffer.isBuffer(kind) || kind.toString() !== 'shm.lock') {
      this.onPush(items);
      return;
    }
    if (!Buffer.isBuffer(token)) return;
    const wait = this.lockWaits.get(token.toString());
    if (wait) wait.resolve(fence);
  }

  #failLockWaits(error) {
    for (const wait of [...this.lockWaits.values()]) wait.reject(error);
  }

  #write() {
    this.writeQueued = false;
    if (!this.socket || this.outbox.length === 0) return;
    const calls = this.outbox;
    this.outbox = [];
    const deadline = Date.now() + this.options.commandTimeout;
    const payloads = new Array(calls.length);
    for (let i = 0; i < calls.length; i++) {
      calls[i].deadline = deadline;
      payloads[i] = calls[i].payload;
      calls[i].payload = null;
      this.inFlight.push(calls[i]);
    }
    writeCommands(this.socket, payloads);
  }

  async #connect() {
    const { socket: path, connectTimeout } = this.options;
    const started = Date.now();
    let delay = 10;
    let reason = 'connect timeout';
    let outOf = null;
    while (!this.closed) {
      try {
        const socket = await open(path, Math.max(1, started + connectTimeout - Date.now()));
        if (this.closed) {
          socket.destroy();
          break;
        }
        this.#attach(socket);
        return;
      } catch (error) {
        // A socket another user could have put there stays refused.
        if (error.code === CODES.UNSAFE_SOCKET) {
          this.connecting = null;
          this.#failAll(error);
          return;
        }
        reason = error.code === CODES.UNREACHABLE ? error.message : error.code || error.message;
        outOf = OUT_OF[error.code] || null;
      }
      if (Date.now() - started + delay > connectTimeout) break;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 500);
    }
    this.connecting = null;
    // Running out of files is not the broker's fault: say so, with its own code.
    const error = this.closed
      ? shmError(CODES.CLOSED, 'the cluster-shm connection is closed')
      : outOf
        ? shmError(CODES.NO_RESOURCES, `cannot connect to the cluster-shm broker at ${path}: this process ran out of ${outOf} (${reason}), still after ${connectTimeout} ms`)
        : shmError(CODES.UNREACHABLE, `cannot reach the cluster-shm broker at ${path} within ${connectTimeout} ms (${reason})`);
    if (!this.closed) this.onEvent('error', error);
    this.#failAll(error);
  }

  #attach(socket) {
    this.socket = socket;
    this.connecting = null;
    if (this.attached++ > 0) this.onEvent('reconnect', { socket: this.options.socket });
    // An idle connection does not keep the process alive; the timeout check
    // does while calls are pending.
    socket.unref();
    readReplies(
      socket,
      (reply) => this.#settle(reply),
      (items) => this.#onPush(items),
      // Replies come in the order of the calls in flight.
      (n) => n < this.inFlight.length && this.inFlight[n].text === true,
    );
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.socket !== socket) return;
      this.socket = null;
      const lost = shmError(CODES.UNREACHABLE, `lost the connection to the cluster-shm broker at ${this.options.socket}`);
      if (!this.closed) this.onEvent('error', lost);
      this.#failInFlight(lost);
      // The waits queued on it ended with it, and the locks it was granted.
      this.#failLockWaits(lost);
      if (!this.closed) this.onLost();
      // Calls that were not written yet go out on a new connection.
      if (this.outbox.length && !this.closed && !this.connecting) this.connecting = this.#connect();
    });
    // AUTH goes first; its failure fails every call. Then SHM.PUSHES ON: pub/sub
    // messages come as pushes, and a subscribed connection keeps running
    // every command (src/cmd/pubsub.rs), so subscriptions share it.
    const handshake = [];
    if (this.options.authSecret) handshake.push({ args: ['AUTH', this.options.authSecret], auth: true });
    handshake.push({ args: ['SHM.PUSHES', 'ON'], auth: false });
    const deadline = Date.now() + this.options.commandTimeout;
    for (const { auth } of handshake) this.inFlight.push({ deadline, settled: false, resolve: () => {}, reject: () => {}, auth });
    writeCommands(socket, handshake.map(({ args }) => encodeCommand(args)));
    this.#write();
  }

  #settle(reply) {
    const call = this.inFlight.shift();
    if (!call || call.settled) return; // it timed out already
    call.settled = true;
    if (reply instanceof ReplyError) {
      // Any error to this process's AUTH refuses it (a secret given to a
      // broker that has none too, as the native connections do).
      if (AUTH_REPLY.test(reply.text) || call.auth) {
        const refused = authError(this.options, reply.text);
        if (call.auth) {
          // Detach first: calls made from here on open a new connection.
          const socket = this.socket;
          this.socket = null;
          this.#failAll(refused);
          if (socket) socket.destroy();
          return;
        }
        call.reject(refused);
        return;
      }
      const code = reply.text.split(' ', 1)[0];
      call.reject(shmError(code === 'OOM' ? CODES.OOM : CODES.SERVER, reply.text, { reply: code }));
    } else {
      call.resolve(reply);
    }
    this.#watchTimeouts();
  }

  /**
   * A check runs while calls are pending, and keeps the process alive
   * meanwhile. Between calls the timer is only unreferenced (making and
   * clearing a timer per call cost more than the rest of the client at
   * one call in flight); its next tick clears it if the connection stayed
   * idle.
   */
  #watchTimeouts() {
    const pending = this.inFlight.length + this.outbox.length;
    if (pending > 0) {
      if (this.timer === null) this.timer = setInterval(this.checkTimeouts, Math.min(100, Math.max(5, this.options.commandTimeout / 4)));
      else if (!this.timer.hasRef()) this.timer.ref();
    } else if (this.timer !== null && this.timer.hasRef()) {
      this.timer.unref();
    }
  }

  #checkTimeouts() {
    const now = Date.now();
    const late = shmError(CODES.TIMEOUT, `no reply from the broker within ${this.options.commandTimeout} ms`);
    // A call that timed out stays in line, settled, so the reply that may
    // still come is matched to it and dropped.
    for (const call of this.inFlight) {
      if (!call.settled && call.deadline <= now) {
        call.settled = true;
        call.reject(late);
      }
    }
    if (this.inFlight.every((c) => c.settled) && this.outbox.length === 0) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  #failInFlight(error) {
    const calls = this.inFlight;
    this.inFlight = [];
    for (const call of calls) {
      if (!call.settled) {
        call.settled = true;
        call.reject(error);
      }
    }
    this.#watchTimeouts();
  }

  #failAll(error) {
    const calls = this.outbox;
    this.outbox = [];
    for (const call of calls) call.reject(error);
    this.#failInFlight(error);
    this.#failLockWaits(error);
  }

  close() {
    this.closed = true;
    const socket = this.socket;
    this.socket = null;
    this.#failAll(shmError(CODES.CLOSED, 'the cluster-shm connection is closed'));
    if (socket) socket.destroy();
  }
}

/**
 * Calls `onReply` for each reply read from `socket`, and `onPush` for each
 * push the broker sends unasked; malformed input closes it. `textAt` is the
 * parser's (see ReplyParser).
 */
function readReplies(socket, onReply, onPush = () => {}, textAt = undefined) {
  const parser = new ReplyParser(textAt);
  socket.on('data', (chunk) => {
    let replies;
    try {
      replies = parser.push(chunk);
    } catch (error) {
      socket.destroy(error);
      return;
    }
    for (const reply of replies) {
      if (reply instanceof Push) onPush(reply.items);
      else onReply(reply);
      if (socket.destroyed) return;
    }
  });
}

/**
 * Connects to the broker socket at `path`, only through a directory out of
 * other users' reach (src/trusted_socket.rs, the check every client makes
 * before it sends the secret): rejects with ERR_SHM_UNSAFE_SOCKET otherwise,
 * or with ERR_SHM_UNREACHABLE while the directory cannot be resolved.
 */
function open(path, timeout) {
  let trusted;
  try {
    trusted = trustedSocketPath(path);
  } catch (error) {
    return Promise.reject(fromNative(error));
  }
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(trusted);
    socket.unref();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('connect timeout'));
    }, timeout);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** The error for a refused secret; it never contains the secret. */
function authError(options, reply = '') {
  let why = options.authSecret ? 'wrong secret (CLUSTER_SHM_AUTH)' : 'it requires a secret (CLUSTER_SHM_AUTH)';
  if (/without any password configured/.test(reply)) why = 'it has no secret, but this process was given one (CLUSTER_SHM_AUTH)';
  return shmError(CODES.AUTH, `the cluster-shm broker at ${options.socket} refused this process: ${why}`);
}

module.exports = { Connection };

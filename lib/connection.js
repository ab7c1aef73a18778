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

/**
 * Encodes a command (strings and Buffers) as a RESP array of bulk strings:
 * a string when every argument is one, else an array of strings and the
 * Buffer arguments themselves, which are never copied here. A string is
 * built in JS and written by the socket in one copy; filling a Buffer piece
 * by piece cost a call into C++ per piece (ten times the time for a SET).
 */
function encodeCommand(args) {
  let text = `*${args.length}\r\n`;
  let parts = null;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (typeof arg === 'string') {
      text += `$${Buffer.byteLength(arg)}\r\n${arg}\r\n`;
    } else {
      (parts ??= []).push(`${text}$${arg.length}\r\n`, arg);
      text = '\r\n';
    }
  }
  if (parts === null) return text;
  parts.push(text);
  return parts;
}

/**
 * The chunks to write for several encoded commands: adjacent text joined
 * into one string, Buffer arguments as they are.
 */
function wireChunks(encoded) {
  const chunks = [];
  let text = '';
  for (const command of encoded) {
    if (typeof command === 'string') {
      text += command;
      continue;
    }
    for (const part of command) {
      if (typeof part === 'string') {
        text += part;
      } else {
        if (text !== '') chunks.push(text);
        text = '';
        chunks.push(part);
      }
    }
  }
  if (text !== '') chunks.push(text);
  return chunks;
}

/** Writes encoded commands in one go: one write, or one writev for text and Buffers together. */
function writeCommands(stream, encoded) {
  const chunks = encoded.length === 1 && typeof encoded[0] === 'string' ? encoded : wireChunks(encoded);
  if (chunks.length === 1) {
    stream.write(chunks[0]);
    return;
  }
  stream.cork();
  for (const chunk of chunks) stream.write(chunk);
  stream.uncork();
}

/** An error reply, kept apart from ordinary strings. */
class ReplyError {
  constructor(text) {
    this.text = text;
  }
}

/** A RESP3 push frame (`>`): a message the broker sends unasked, not a reply. */
class Push {
  constructor(items) {
    this.items = items;
  }
}

/**
 * Incremental RESP2 reply decoder (plus RESP3 pushes). It resumes where the
 * last chunk ended: the arrays being filled are kept on a stack, and a bulk
 * string that is not all there yet is kept as a list of pieces joined once
 * it is complete, so every byte is parsed once and copied at most twice,
 * whatever the chunking. Re-parsing from the start of a reply on each chunk
 * made a large array reply cost time quadratic in its size.
 */
class ReplyParser {
  /**
   * `textAt(n)`: whether the bulk strings of the reply that starts after
   * `n` others completed in the same push() come out as (UTF-8) strings
   * rather than Buffers. A large list of keys decodes several times faster
   * so than as a million small Buffers turned into strings afterwards.
   */
  constructor(textAt = () => false) {
    this.textAt = textAt;
    /** Unparsed input: the rest of the last chunk (with a partial line at its end, at most). */
    this.buffer = null;
    this.offset = 0;
    /** Arrays (and pushes) whose items are still coming, innermost last. */
    this.open = [];
    /** A bulk string still arriving: its length, its pieces so far and their total. */
    this.bulk = null;
    /** Whether the reply being parsed decodes its bulk strings as text. */
    this.text = false;
    /** Replies (not pushes) completed so far by the current push(). */
    this.completed = 0;
  }

  /** Adds input; returns the replies it completes. */
  push(chunk) {
    const replies = [];
    this.completed = 0;
    if (this.bulk !== null) {
      chunk = this.#fillBulk(chunk, replies);
      if (chunk === null) return replies;
    }
    if (this.buffer === null) {
      this.buffer = chunk;
    } else {
      // Only a partial line is ever left over: a few bytes.
      this.buffer = Buffer.concat([this.buffer.subarray(this.offset), chunk]);
    }
    this.offset = 0;
    this.#parse(replies);
    return replies;
  }

  #parse(replies) {
    const buffer = this.buffer;
    let offset = this.offset;
    while (offset < buffer.length) {
      const end = lineEnd(buffer, offset + 1);
      if (end < 0) break;
      const type = buffer[offset];
      if (this.open.length === 0) this.text = type !== 0x3e && this.textAt(this.completed);
      let value;
      switch (type) {
        case 0x2b: // '+'
          value = end === offset + 3 && buffer[offset + 1] === 0x4f && buffer[offset + 2] === 0x4b ? 'OK' : buffer.toString('utf8', offset + 1, end);
          offset = end + 2;
          break;
        case 0x2d: // '-'
          value = new ReplyError(buffer.toString('utf8', offset + 1, end));
          offset = end + 2;
          break;
        case 0x3a: // ':'
          value = readInteger(buffer, offset + 1, end);
          offset = end + 2;
          break;
        case 0x24: {
          // '$'
          const length = readInteger(buffer, offset + 1, end);
          offset = end + 2;
          if (length < 0) {
            value = null;
            break;
          }
          if (buffer.length < offset + length + 2) {
            // The rest comes in later chunks.
            const piece = buffer.subarray(offset);
            this.bulk = { length, pieces: [piece], received: piece.length };
            this.buffer = null;
            return;
          }
          if (this.text) {
            value = buffer.toString('utf8', offset, offset + length);
          } else {
            const bytes = buffer.subarray(offset, offset + length);
            // A small value is copied, so that it does not keep a large read
            // buffer alive; one that is most of the buffer is not.
            value = length * 2 >= buffer.length ? bytes : Buffer.from(bytes);
          }
          offset += length + 2;
          break;
        }
        case 0x2a: // '*'
        case 0x3e: {
          // '>'
          const count = readInteger(buffer, offset + 1, end);
          offset = end + 2;
          if (count > 0) {
            this.open.push({ items: new Array(count), filled: 0, push: type === 0x3e });
            continue;
          }
          value = count < 0 ? null : type === 0x3e ? new Push([]) : [];
          break;
        }
        default:
          throw malformed(type);
      }
      this.#complete(value, replies);
    }
    if (offset === buffer.length) {
      this.buffer = null;
      this.offset = 0;
    } else {
      this.offset = offset;
    }
  }

  /** Takes what `chunk` holds of the pending bulk string; returns the rest of the chunk, or null when it had no more. */
  #fillBulk(chunk, replies) {
    const bulk = this.bulk;
    const wanted = bulk.length + 2 - bulk.received;
    if (chunk.length < wanted) {
      bulk.pieces.push(chunk);
      bulk.received += chunk.length;
      return null;
    }
    bulk.pieces.push(chunk.subarray(0, wanted));
    this.bulk = null;
    const whole = Buffer.concat(bulk.pieces, bulk.length + 2);
    this.#complete(this.text ? whole.toString('utf8', 0, bulk.length) : whole.subarray(0, bulk.length), replies);
    return wanted === chunk.length ? null : chunk.subarray(wanted);
  }

  /** A value is complete: it fills the innermost open array, or is a reply. */
  #complete(value, replies) {
    const open = this.open;
    while (open.length > 0) {
      const array = open[open.length - 1];
      array.items[array.filled++] = value;
      if (array.filled < array.items.length) return;
      open.pop();
      value = array.push ? new Push(array.items) : array.items;
    }
    if (!(value instanceof Push)) this.completed++;
    replies.push(value);
  }
}

/**
 * Lines and integers are read byte by byte in JS: for replies of a few
 * bytes, that is cheaper than Buffer's indexOf and toString, each a call
 * into C++.
 */

/** Index of the CR of the first CRLF at or after `from`; -1 when there is none yet. */
function lineEnd(buffer, from) {
  const last = buffer.length - 1;
  for (let i = from; i < last; i++) {
    if (buffer[i] === 0x0d && buffer[i + 1] === 0x0a) return i;
  }
  return -1;
}

/** The decimal integer in buffer[start, end). */
function readInteger(buffer, start, end) {
  const negative = buffer[start] === 0x2d; // '-'
  let i = negative ? start + 1 : start;
  if (i === end) throw malformed(0x0d);
  let n = 0;
  for (; i < end; i++) {
    const digit = buffer[i] - 0x30;
    if (digit < 0 || digit > 9) throw malformed(buffer[i]);
    n = n * 10 + digit;
  }
  return negative ? -n : n;
}

function malformed(byte) {
  return shmError(CODES.UNREACHABLE, `the broker sent a malformed reply (byte ${byte})`);
}

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
    /** Changes when a socket is attached or lost: state set on one (CLIENT TRACKING) is gone with it. */
    this.generation = 0;
    /** Lock waits queued in the broker, by token: their outcome comes as a push. */
    this.lockWaits = new Map();
    this.write = () => this.#write();
    this.checkTimeouts = () => this.#checkTimeouts();
  }

  /**
   * Sends a command; resolves with its reply, or with `{ reply, generation }`
   * when `tagged` (the generation of the socket it was written on).
   */
  call(args, tagged = false, text = false) {
    if (this.closed) return Promise.reject(shmError(CODES.CLOSED, 'the cluster-shm connection is closed'));
    return new Promise((resolve, reject) => {
      this.outbox.push({ payload: encodeCommand(args), resolve, reject, deadline: 0, settled: false, tagged, text, generation: 0 });
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
    return this.call(args, false, true);
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
    if (!Buffer.isBuffer(kind) || kind.toString() !== 'shm.lock' || !Buffer.isBuffer(token)) return;
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
      calls[i].generation = this.generation;
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
    this.generation++;
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
      this.generation++;
      const lost = shmError(CODES.UNREACHABLE, `lost the connection to the cluster-shm broker at ${this.options.socket}`);
      if (!this.closed) this.onEvent('error', lost);
      this.#failInFlight(lost);
      // The waits queued on it ended with it, and the locks it was granted.
      this.#failLockWaits(lost);
      // Calls that were not written yet go out on a new connection.
      if (this.outbox.length && !this.closed && !this.connecting) this.connecting = this.#connect();
    });
    if (this.options.authSecret) {
      // AUTH goes first; its failure fails every call.
      this.inFlight.push({
        deadline: Date.now() + this.options.commandTimeout,
        settled: false,
        resolve: () => {},
        reject: () => {},
        auth: true,
      });
      writeCommands(socket, [encodeCommand(['AUTH', this.options.authSecret])]);
    }
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
      call.resolve(call.tagged ? { reply, generation: call.generation } : reply);
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

module.exports = { Connection, ReplyParser, ReplyError, Push, encodeCommand, wireChunks, writeCommands, open, readReplies };

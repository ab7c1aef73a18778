'use strict';

/**
 * The least a JS client can do on the broker's socket: a bare net.Socket,
 * calls of a tick written together (as lib/connection.js does), replies
 * matched in order by a minimal scanner, no timeouts, no reconnection, no
 * error replies told apart. What it reaches bounds what any client of the
 * broker could reach on this machine. Used by bench/profile.js (with
 * pre-encoded commands) and by the bench's socket-floor system.
 */

const net = require('node:net');
const { encodeCommand, writeCommands } = require('../../lib/resp');

class FloorClient {
  static connect(socketPath = process.env.CLUSTER_SHM_SOCKET) {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new FloorClient(socket));
      });
    });
  }

  constructor(socket) {
    this.socket = socket;
    this.waiting = [];
    this.outbox = [];
    this.flushQueued = false;
    this.rest = null;
    this.flush = () => {
      this.flushQueued = false;
      const out = this.outbox;
      this.outbox = [];
      writeCommands(this.socket, out);
    };
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', () => {});
    if (process.env.CLUSTER_SHM_AUTH) this.call(encodeCommand(['AUTH', process.env.CLUSTER_SHM_AUTH]));
  }

  /** Sends an encoded command; resolves with a bulk reply's whole frame, or null for any other reply. */
  call(payload) {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.outbox.push(payload);
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(this.flush);
      }
    });
  }

  onData(chunk) {
    const buffer = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let at = 0;
    for (;;) {
      const end = replyEnd(buffer, at);
      if (end < 0) break;
      const reply = buffer[at] === 0x24 ? buffer.subarray(at, end) : null;
      at = end;
      this.waiting.shift()(reply);
      if (at === buffer.length) break;
    }
    this.rest = at < buffer.length ? buffer.subarray(at) : null;
  }

  close() {
    this.socket.destroy();
  }
}

/** The end of the reply at `at` (simple, error, integer or bulk), or -1 while incomplete. */
function replyEnd(buffer, at) {
  const cr = buffer.indexOf(13, at);
  if (cr < 0 || cr + 1 >= buffer.length) return -1;
  if (buffer[at] !== 0x24) return cr + 2;
  let length = 0;
  for (let i = at + 1; i < cr; i++) length = buffer[i] === 0x2d ? -1 : length * 10 + (buffer[i] - 48);
  if (length < 0) return cr + 2;
  const end = cr + 2 + length + 2;
  return end <= buffer.length ? end : -1;
}

/** The body of a bulk reply frame as text: `$<n>\r\n<body>\r\n`. */
function bulkText(frame) {
  return frame.toString('utf8', frame.indexOf(13) + 2, frame.length - 2);
}

module.exports = { FloorClient, bulkText };

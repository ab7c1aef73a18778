'use strict';

/**
 * RESP framing, apart from any connection: commands encoded for the wire,
 * and the incremental decoder of what the broker sends back (replies, and
 * RESP3 pushes the broker sends unasked). lib/connection.js matches the
 * decoded replies to its calls.
 */

const { CODES, shmError } = require('./errors');

/**
 * Encodes a command (strings, Buffers, and values in parts: arrays of
 * Buffers making one argument) as a RESP array of bulk strings: a string
 * when every argument is one, else an array of strings and the Buffers
 * themselves, which are never copied here. A string is
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
    } else if (Array.isArray(arg)) {
      // A value in parts (lib/backends/index.js): one bulk string, its Buffers in turn.
      let length = 0;
      for (const part of arg) length += part.length;
      (parts ??= []).push(`${text}$${length}\r\n`, ...arg);
      text = '\r\n';
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

module.exports = { encodeCommand, wireChunks, writeCommands, ReplyParser, ReplyError, Push };

'use strict';

// The JS side of the wire: the command encoder and the incremental reply
// parser of lib/resp.js (the broker side has its own Rust tests).
const { Writable } = require('node:stream');
const { ReplyParser, ReplyError, Push, encodeCommand, wireChunks, writeCommands } = require('../lib/resp');

/** The bytes a stream receives from writeCommands, and the writes it saw. */
async function written(encoded) {
  const chunks = [];
  const sink = new Writable({
    writev(items, done) {
      chunks.push(items.map((item) => Buffer.from(item.chunk)));
      done();
    },
    write(chunk, encoding, done) {
      chunks.push([Buffer.from(chunk, encoding)]);
      done();
    },
  });
  writeCommands(sink, encoded);
  await new Promise((resolve) => sink.end(resolve));
  return { bytes: Buffer.concat(chunks.flat()), writes: chunks.length };
}

test('commands are encoded as RESP arrays of bulk strings, UTF-8 and binary safe', async () => {
  const binary = Buffer.concat([Buffer.from('*3\r\n$3\r\nSET\r\n$4\r\nclé\r\n$4\r\n'), Buffer.from([0, 13, 10, 255]), Buffer.from('\r\n')]);
  const value = Buffer.from([0, 13, 10, 255]);
  const parts = encodeCommand(['SET', 'clé', value]);
  // The Buffer argument itself, not a copy.
  expect(parts).toContain(value);
  expect((await written([parts])).bytes).toEqual(binary);
  // A Buffer argument in the middle, and a string command (UTF-8 lengths in bytes).
  expect((await written([encodeCommand(['SET', Buffer.from('k'), 'vé'])])).bytes).toEqual(Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nvé\r\n'));
  expect(encodeCommand(['PING'])).toBe('*1\r\n$4\r\nPING\r\n');
  expect(encodeCommand(['SET', 'k', ''])).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n');
  // Several commands go in one write: text joined, Buffers beside it.
  expect(wireChunks([encodeCommand(['PING']), encodeCommand(['GET', 'é'])])).toEqual(['*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$2\r\né\r\n']);
  const mixed = await written([encodeCommand(['PING']), parts, encodeCommand(['GET', 'k'])]);
  expect(mixed.bytes).toEqual(Buffer.concat([Buffer.from('*1\r\n$4\r\nPING\r\n'), binary, Buffer.from('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n')]));
  expect(mixed.writes).toBe(1);
});

test('a value in parts (a Buffer value\'s tag and bytes) goes on the wire as one bulk string, its Buffers not copied', async () => {
  const tag = Buffer.from([0xff, 0x53, 0x48, 0x4d, 1]);
  const body = Buffer.from([0, 13, 10, 255]);
  const encoded = encodeCommand(['SET', 'k', [tag, body], 'PX', '10']);
  expect(encoded).toContain(tag);
  expect(encoded).toContain(body);
  expect((await written([encoded])).bytes).toEqual(
    Buffer.concat([Buffer.from('*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$9\r\n'), tag, body, Buffer.from('\r\n$2\r\nPX\r\n$2\r\n10\r\n')]),
  );
});

const wire = Buffer.from('+OK\r\n-ERR bad thing\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n*-1\r\n$0\r\n\r\n');

function check(replies) {
  expect(replies).toHaveLength(8);
  expect(replies[0]).toBe('OK');
  expect(replies[1].text).toBe('ERR bad thing');
  expect(replies[2]).toBe(-42);
  expect(replies[3]).toEqual(Buffer.from('he\r\no'));
  expect(replies[4]).toBeNull();
  expect(replies[5]).toEqual([1, [Buffer.from('a'), null], 'x']);
  expect(replies[6]).toBeNull();
  expect(replies[7]).toEqual(Buffer.alloc(0));
}

test('replies parse the same whatever the chunking: split at every byte', () => {
  for (let cut = 0; cut <= wire.length; cut++) {
    const parser = new ReplyParser();
    const replies = [...parser.push(wire.subarray(0, cut)), ...parser.push(wire.subarray(cut))];
    check(replies);
  }
  const parser = new ReplyParser();
  const oneByOne = [];
  for (const byte of wire) oneByOne.push(...parser.push(Buffer.from([byte])));
  check(oneByOne);
});

test('a large value arriving in many chunks comes out whole', () => {
  const value = Buffer.alloc(3 * 1024 * 1024, 7);
  const data = Buffer.concat([Buffer.from(`$${value.length}\r\n`), value, Buffer.from('\r\n:5\r\n')]);
  const parser = new ReplyParser();
  const replies = [];
  for (let at = 0; at < data.length; at += 1000) replies.push(...parser.push(data.subarray(at, at + 1000)));
  expect(replies).toHaveLength(2);
  expect(replies[0].equals(value)).toBe(true);
  expect(replies[1]).toBe(5);
});

test('a small value is copied out of the read buffer, a value that is most of it is not', () => {
  const small = Buffer.from('$2\r\nhi\r\n');
  const chunk = Buffer.concat([small, Buffer.from(`$${4096}\r\n`), Buffer.alloc(4096, 1), Buffer.from('\r\n')]);
  const [hi, large] = new ReplyParser().push(chunk);
  expect(hi.toString()).toBe('hi');
  expect(hi.buffer).not.toBe(chunk.buffer);
  expect(large.equals(Buffer.alloc(4096, 1))).toBe(true);
  expect(large.buffer).toBe(chunk.buffer);
});

test('replies parse the same whatever the chunking: split at every two places', () => {
  for (let first = 0; first <= wire.length; first++) {
    for (let second = first; second <= wire.length; second++) {
      const parser = new ReplyParser();
      check([...parser.push(wire.subarray(0, first)), ...parser.push(wire.subarray(first, second)), ...parser.push(wire.subarray(second))]);
    }
  }
});

test('a push from the broker comes out as a Push, apart from the replies around it, whatever the chunking', () => {
  const pushes = Buffer.from('$1\r\na\r\n>3\r\n$8\r\nshm.lock\r\n$2\r\nt1\r\n:7\r\n*1\r\n>0\r\n:2\r\n>2\r\n$8\r\nshm.lock\r\n$-1\r\n');
  for (let cut = 0; cut <= pushes.length; cut++) {
    const parser = new ReplyParser();
    const replies = [...parser.push(pushes.subarray(0, cut)), ...parser.push(pushes.subarray(cut))];
    expect(replies).toEqual([Buffer.from('a'), new Push([Buffer.from('shm.lock'), Buffer.from('t1'), 7]), [new Push([])], 2, new Push([Buffer.from('shm.lock'), null])]);
  }
});

/** `items` as a RESP array of bulk strings, cut in chunks of `size` bytes. */
function chunkedArray(items, size) {
  const wire = Buffer.from(`*${items.length}\r\n${items.map((item) => `$${Buffer.byteLength(item)}\r\n${item}\r\n`).join('')}`);
  const chunks = [];
  for (let at = 0; at < wire.length; at += size) chunks.push(wire.subarray(at, at + size));
  return chunks;
}

// Parsing resumes where the last chunk ended: a reply of a million items
// in 16 KiB chunks is parsed once, not once per chunk (which took minutes).
test('an array reply of a million keys arriving in many chunks is parsed once', () => {
  const keys = Array.from({ length: 1_000_000 }, (_, i) => `key:${i}`);
  const parser = new ReplyParser();
  const replies = [];
  for (const chunk of chunkedArray(keys, 16 * 1024)) replies.push(...parser.push(chunk));
  expect(replies).toHaveLength(1);
  expect(replies[0]).toHaveLength(keys.length);
  expect(replies[0].filter((key, i) => key.toString() !== keys[i])).toEqual([]);
});

test('an array of large values arriving in many chunks comes out whole', () => {
  const values = Array.from({ length: 48 }, (_, i) => String.fromCharCode(65 + (i % 26)).repeat(1024 * 1024));
  const parser = new ReplyParser();
  const replies = [];
  for (const chunk of chunkedArray(values, 64 * 1024)) replies.push(...parser.push(chunk));
  expect(replies).toHaveLength(1);
  expect(replies[0].map(String)).toEqual(values);
});

test('the bulk strings of a reply asked for as text come out as strings, the replies around it as Buffers, whatever the chunking', () => {
  const wire = Buffer.from('$1\r\na\r\n>2\r\n$8\r\nshm.lock\r\n$1\r\nt\r\n*3\r\n$2\r\nk1\r\n$4\r\nclé\r\n*1\r\n$0\r\n\r\n$1\r\nb\r\n');
  for (let cut = 0; cut <= wire.length; cut++) {
    // The second reply (after one other, whatever pushes come between) is text.
    const parser = new ReplyParser((n) => n === 1);
    const replies = [];
    for (const chunk of [wire.subarray(0, cut), wire.subarray(cut)]) {
      const completed = parser.push(chunk);
      replies.push(...completed);
      // Completed replies leave the line of calls, as the connection settles them.
      const settled = completed.filter((r) => !(r instanceof Push)).length;
      const textAt = parser.textAt;
      parser.textAt = (n) => textAt(n + settled);
    }
    expect(replies).toEqual([Buffer.from('a'), new Push([Buffer.from('shm.lock'), Buffer.from('t')]), ['k1', 'clé', ['']], Buffer.from('b')]);
  }
});

test('an error reply keeps its text apart from a simple string with the same text', () => {
  const [error, status] = new ReplyParser().push(Buffer.from('-WRONGTYPE not a string\r\n+WRONGTYPE not a string\r\n'));
  expect(error).toBeInstanceOf(ReplyError);
  expect(error.text).toBe('WRONGTYPE not a string');
  expect(status).toBe('WRONGTYPE not a string');
});

test('a byte that starts no RESP frame is refused with ERR_SHM_UNREACHABLE, naming the byte', () => {
  const parser = new ReplyParser();
  expect(parser.push(Buffer.from(':1\r\n'))).toEqual([1]);
  expect(() => parser.push(Buffer.from('%1\r\n'))).toThrow(expect.objectContaining({ code: 'ERR_SHM_UNREACHABLE', message: expect.stringContaining('byte 37') }));
  expect(() => new ReplyParser().push(Buffer.from(':1x\r\n'))).toThrow(expect.objectContaining({ code: 'ERR_SHM_UNREACHABLE' }));
});

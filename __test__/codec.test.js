'use strict';

// The codec in-process: what a value is stored as, and what a stored value
// reads back as, including a long value's own Buffer (`owned`), which a
// byte value is returned as a view of.
const { encode, encodeInParts, decode, encodedLength } = require('../lib/codec');

const asBuffer = (encoded) => (Array.isArray(encoded) ? Buffer.concat(encoded) : Buffer.from(encoded));

test('JSON values are stored as JSON text and read back equal', () => {
  const value = { id: 7, name: 'é', list: [1, null, true] };
  const stored = encode(value, 'json');
  expect(stored).toBe('{"id":7,"name":"é","list":[1,null,true]}');
  expect(decode(Buffer.from(stored))).toEqual(value);
  expect(decode(Buffer.from(stored), true)).toEqual(value);
});

test('a Buffer is stored behind the 5-byte tag, whole or in parts, with the same bytes', () => {
  const value = Buffer.from([0, 1, 2, 250]);
  const whole = asBuffer(encode(value, 'json'));
  const parts = encodeInParts(value, 'json');
  expect([...whole]).toEqual([0xff, 0x53, 0x48, 0x4d, 0x01, 0, 1, 2, 250]);
  expect(parts).toHaveLength(2);
  expect([...Buffer.concat(parts)]).toEqual([...whole]);
  expect(encodedLength(parts)).toBe(9);
});

test('a byte value read from a reused buffer is a copy; from a Buffer of its own, a view of it', () => {
  const stored = asBuffer(encode(Buffer.from('abc'), 'json'));

  const copied = decode(stored, false);
  stored[5] = 0x78; // the reused buffer is overwritten by the next read
  expect(copied.toString()).toBe('abc');

  const view = decode(stored, true);
  expect(view.toString()).toBe('xbc');
  expect({ sameMemory: view.buffer === stored.buffer, byteOffset: view.byteOffset - stored.byteOffset }).toEqual({ sameMemory: true, byteOffset: 5 });
});

test("an 'advanced' value holding a Buffer, read from a reused buffer, keeps its bytes when that buffer is overwritten", () => {
  const reused = Buffer.alloc(64);
  const stored = asBuffer(encode({ data: Buffer.from('first!') }, 'advanced'));
  stored.copy(reused);
  const value = decode(reused.subarray(0, stored.length), false);
  reused.fill(0x53);
  expect({ isBuffer: Buffer.isBuffer(value.data), text: value.data.toString() }).toEqual({ isBuffer: true, text: 'first!' });
});

test('bytes another client wrote read back as a string when they are UTF-8, else as a Buffer (a view only when owned)', () => {
  expect(decode(Buffer.from('plain text'))).toBe('plain text');
  const binary = Buffer.from([0xc3, 0x28, 0x00]);
  const copied = decode(binary, false);
  const view = decode(binary, true);
  binary[2] = 0x01;
  expect({ copied: [...copied], view: [...view] }).toEqual({ copied: [0xc3, 0x28, 0x00], view: [0xc3, 0x28, 0x01] });
});

test('a missing value is undefined and an integer reply is the number', () => {
  expect(decode(null)).toBeUndefined();
  expect(decode(undefined)).toBeUndefined();
  expect(decode(42)).toBe(42);
});

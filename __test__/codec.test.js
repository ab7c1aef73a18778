'use strict';

// The codec in-process: what a value is stored as, and what a stored value
// reads back as, including a long value's own Buffer (`owned`), which a
// byte value is returned as a view of.
const { encode, encodeInParts, decode, decodeRead, encodedLength } = require('../lib/codec');

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

// A worker's read copies the value into a buffer the next read reuses:
// decodeRead takes its first `length` bytes, whatever follows them.
test('a read from a reused buffer decodes only its first length bytes, and nothing it returns shares that buffer', () => {
  const reused = Buffer.alloc(64, 0x7b); // '{' after the value: parsing past it would fail
  const read = (stored) => {
    const bytes = Buffer.isBuffer(stored) ? stored : Buffer.from(stored);
    bytes.copy(reused);
    return decodeRead(reused, bytes.length, false);
  };
  const values = {
    json: read(encode({ a: [1, 'é'] }, 'json')),
    text: read('plain text'),
    empty: read(''),
    bytes: read(asBuffer(encode(Buffer.from('abc'), 'json'))),
    binary: read(Buffer.from([0xc3, 0x28])),
    missing: decodeRead(null, 0, false),
  };
  reused.fill(0x78);
  expect({ ...values, bytes: [...values.bytes], binary: [...values.binary] }).toEqual({
    json: { a: [1, 'é'] },
    text: 'plain text',
    empty: '',
    bytes: [0x61, 0x62, 0x63],
    binary: [0xc3, 0x28],
    missing: undefined,
  });
});

test("a read that came back in a Buffer of its own returns a byte value as a view of it", () => {
  const own = asBuffer(encode(Buffer.from('abc'), 'json'));
  const view = decodeRead(own, own.length, true);
  expect({ text: view.toString(), sameMemory: view.buffer === own.buffer, byteOffset: view.byteOffset - own.byteOffset }).toEqual({
    text: 'abc',
    sameMemory: true,
    byteOffset: 5,
  });
});

// The fast check that lets JSON.stringify run without a replacer walks an
// object's properties with for...in, which also visits enumerable ones added
// to Object.prototype: they must not change what is stored or refused.
test('an enumerable property added to Object.prototype changes neither what is stored nor what is refused', () => {
  const plain = { id: 1, list: [{ a: 'b' }] };
  Object.prototype.added = () => 'not data';
  try {
    const stored = encode(plain, 'json');
    let refusal = null;
    try {
      encode({ when: new Map() }, 'json');
    } catch (error) {
      refusal = error.code;
    }
    expect({ stored, refusal }).toEqual({ stored: '{"id":1,"list":[{"a":"b"}]}', refusal: 'ERR_INVALID_ARG_VALUE' });
  } finally {
    delete Object.prototype.added;
  }
});

'use strict';

/**
 * How values are stored in the broker.
 *
 * - JSON-representable values are stored as JSON text, so `redis-cli` shows
 *   them readably and any Redis client can read them.
 * - A Buffer or Uint8Array is stored as its bytes behind a 5-byte tag.
 * - With `serialization: 'advanced'`, anything else structured clone keeps
 *   (Date, Map, Set, BigInt, RegExp, Error, typed arrays, cycles) is stored as
 *   v8-serialized bytes behind another tag.
 *
 * Reading never needs to know the mode: the stored bytes say what they are.
 * Bytes written by other clients that are neither tagged nor JSON read back
 * as a string (valid UTF-8) or a Buffer.
 */

const v8 = require('node:v8');
const { isUtf8 } = require('node:buffer');
const { types } = require('node:util');
const { typeError, rangeError, CODES } = require('./errors');

// 0xFF never starts JSON text or valid UTF-8.
const MAGIC = [0xff, 0x53, 0x48, 0x4d]; // "\xFFSHM"
const KIND_BYTES = 0x01;
const KIND_V8 = 0x02;
const HEADER_LENGTH = MAGIC.length + 1;

function header(kind) {
  return Buffer.from([...MAGIC, kind]);
}
const BYTES_HEADER = header(KIND_BYTES);
const V8_HEADER = header(KIND_V8);

/** Thrown inside the JSON replacer when a value is not plain JSON. */
class NotJson extends Error {}

function describe(value) {
  if (typeof value !== 'object') return typeof value === 'number' ? String(value) : typeof value;
  return (value.constructor && value.constructor.name) || 'object';
}

/**
 * JSON.stringify replacers: refuse what JSON would silently change or drop,
 * instead of storing something other than what the caller passed. In
 * 'advanced' mode a Date is not JSON either (it would come back a string).
 */
function replacer(advanced) {
  // Hot path: one call per value stored. The message is only built on refusal.
  const at = (key) => (key ? ` (at "${key}")` : '');
  return function strict(key, value) {
    switch (typeof value) {
      case 'string':
        // A Date has become its ISO string already: in 'advanced' mode it is not JSON.
        if (advanced && types.isDate(this[key])) throw new NotJson(`a Date${at(key)}`);
        return value;
      case 'boolean':
        return value;
      case 'number':
        if (!Number.isFinite(value)) throw new NotJson(`${value}${at(key)}`);
        if (advanced && Object.is(value, -0)) throw new NotJson(`-0${at(key)}`);
        return value;
      case 'function':
      case 'symbol':
        throw typeError(`cannot store a ${typeof value}${at(key)}: functions and symbols are not data`, CODES.INVALID_ARG_VALUE);
      case 'bigint':
        throw new NotJson(`a BigInt${at(key)}`);
      case 'undefined':
        // JSON drops it (or makes it null in an array); structured clone keeps it.
        if (advanced) throw new NotJson(`undefined${at(key)}`);
        return value;
      default: {
        // toJSON (Buffer, Date) has already run: look at the original.
        const original = this[key];
        if (original !== null && typeof original === 'object' && !Array.isArray(original)) {
          // An Error's name, message, stack and cause are not own enumerable
          // properties: as JSON it would be {}.
          if (
            ArrayBuffer.isView(original) ||
            types.isAnyArrayBuffer(original) ||
            types.isMap(original) ||
            types.isSet(original) ||
            types.isRegExp(original) ||
            types.isNativeError(original)
          ) {
            throw new NotJson(`a ${describe(original)}${at(key)}`);
          }
          if (advanced && types.isDate(original)) throw new NotJson(`a Date${at(key)}`);
        }
        return value;
      }
    }
  };
}
const REPLACERS = { json: replacer(false), advanced: replacer(true) };

/** Nesting beyond which the replacer path decides (it also detects cycles). */
const PLAIN_DEPTH = 32;

/**
 * True when `value` is made only of plain objects, arrays, strings, finite
 * numbers, booleans and null, so that JSON.stringify without a replacer gives
 * the very text the strict replacer would. A replacer is a call from C++ into
 * JS per property, which made encoding 2.5 times slower; this walk costs a
 * fraction of that. Anything else (a Date, a Buffer, a class instance, a
 * toJSON method, undefined, NaN, a deep or circular structure) answers false
 * and takes the replacer path, which accepts or refuses it as before.
 */
function isPlainJson(value, advanced, depth) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !(advanced && Object.is(value, -0));
    case 'object': {
      if (value === null) return true;
      if (depth >= PLAIN_DEPTH || typeof value.toJSON === 'function') return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!isPlainJson(value[i], advanced, depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      // for…in also visits inherited enumerable properties (only there if
      // someone added them to Object.prototype): checking those as well can
      // only send a value down the replacer path, never past it.
      for (const key in value) {
        if (!isPlainJson(value[key], advanced, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * Encodes a value for storage: a string (JSON text) or a Buffer (tagged).
 * Throws TypeError for values the chosen mode cannot keep.
 */
function encode(value, serialization) {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (Number.isFinite(value) && !(serialization === 'advanced' && Object.is(value, -0))) return JSON.stringify(value);
      break;
    case 'undefined':
      throw typeError('cannot store undefined: use delete(key) to remove a key', CODES.INVALID_ARG_VALUE);
    case 'function':
    case 'symbol':
      throw typeError(`cannot store a ${typeof value}: functions and symbols are not data`, CODES.INVALID_ARG_VALUE);
    default:
      if (value === null) return 'null';
      if (types.isUint8Array(value)) {
        return Buffer.concat([BYTES_HEADER, toBuffer(value)]);
      }
  }
  const advanced = serialization === 'advanced';
  if (isPlainJson(value, advanced, 0)) return JSON.stringify(value);
  try {
    return JSON.stringify(value, advanced ? REPLACERS.advanced : REPLACERS.json);
  } catch (error) {
    const notJson = error instanceof NotJson || isCycleError(error);
    if (!notJson) throw isTooDeep(error) ? tooDeep() : error;
    if (serialization === 'advanced') return encodeV8(value);
    const what = error instanceof NotJson ? error.message : 'a circular structure';
    throw typeError(
      `cannot store ${what} with serialization 'json' without changing it; use serialization: 'advanced'`,
      CODES.INVALID_ARG_VALUE,
    );
  }
}

/**
 * JSON.stringify and v8.serialize recurse once per level of nesting: a
 * value nested some thousands deep (how many depends on the stack left)
 * exhausts the stack.
 */
function isTooDeep(error) {
  return error instanceof RangeError && /call stack/i.test(error.message);
}

function tooDeep() {
  return rangeError('cannot store this value: it is nested too deeply to encode (thousands of levels)', CODES.VALUE_TOO_DEEP);
}

function isCycleError(error) {
  return error instanceof TypeError && /circular/i.test(error.message);
}

function encodeV8(value) {
  try {
    return Buffer.concat([V8_HEADER, v8.serialize(value)]);
  } catch (error) {
    if (isTooDeep(error)) throw tooDeep();
    throw typeError(`cannot store this value: ${error.message}`, CODES.INVALID_ARG_VALUE);
  }
}

function toBuffer(view) {
  return Buffer.isBuffer(view) ? view : Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * Decodes a stored value; a missing value (null reply) is `undefined`.
 * `owned`: `stored` is a Buffer nobody else holds or writes, so a byte value
 * is returned as a view of it rather than copied.
 */
function decode(stored, owned = false) {
  if (stored === null || stored === undefined) return undefined;
  if (typeof stored === 'number') return stored;
  if (stored.length >= HEADER_LENGTH && stored[0] === 0xff && stored[1] === MAGIC[1] && stored[2] === MAGIC[2] && stored[3] === MAGIC[3]) {
    const body = stored.subarray(HEADER_LENGTH);
    if (stored[4] === KIND_BYTES) return owned ? body : Buffer.from(body);
    // A Buffer or typed array inside comes back as a view of what it is
    // deserialized from: a reused read buffer must be copied first.
    if (stored[4] === KIND_V8) return v8.deserialize(owned ? body : Buffer.from(body));
  }
  const text = stored.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    // Written by another client: not ours to reinterpret.
    if (isUtf8(stored)) return text;
    return owned ? stored : Buffer.from(stored);
  }
}

/**
 * decode() of a read of the mapped store: the first `length` bytes of
 * `bytes` (null for a missing key). `owned`: `bytes` is a Buffer of the
 * value's own; otherwise a buffer the next read reuses, which nothing
 * returned may share.
 */
function decodeRead(bytes, length, owned) {
  if (bytes === null) return undefined;
  if (length !== 0 && bytes[0] !== 0xff) {
    // JSON text, the common case, parsed without a Buffer made of it first.
    const text = bytes.toString('utf8', 0, length);
    try {
      return JSON.parse(text);
    } catch {
      // Not JSON: decode() says what it is.
    }
  }
  return decode(owned ? bytes : bytes.subarray(0, length), owned);
}

/**
 * As encode(), but a byte value comes back as its tag and its bytes, for a
 * backend that joins them in the copy it makes anyway (a worker's mapped
 * store): the value is not concatenated into a new Buffer first.
 */
function encodeInParts(value, serialization) {
  return types.isUint8Array(value) ? [BYTES_HEADER, toBuffer(value)] : encode(value, serialization);
}

/** Byte length of an encoded value (or of its parts), for the size limit. */
function encodedLength(encoded) {
  if (Array.isArray(encoded)) return encoded.reduce((sum, part) => sum + part.length, 0);
  return typeof encoded === 'string' ? Buffer.byteLength(encoded) : encoded.length;
}

module.exports = { encode, encodeInParts, decode, decodeRead, encodedLength };

'use strict';

const { fromNative } = require('./errors');

/** What a call returns when the broker must run the command instead. */
const NOT_LOCAL = Symbol('not run in this process');

/**
 * Reads copy text into one reused buffer, which starts this long and grows
 * to fit the text read, up to SCRATCH_MAX; longer text, and binary values
 * past 4 KiB (a tagged Buffer, a serialized value), come back in a Buffer of
 * their own, copied once out of the mapping, which a byte value is then
 * returned as a view of (see localStoreGet).
 */
const SCRATCH_START = 64 * 1024;
const SCRATCH_MAX = 1024 * 1024;

/**
 * A store this process runs data commands on itself, through the addon's
 * plain functions, which name the store by id (a napi-rs class method costs
 * about ten times a function's crossing, and these run on every data call):
 * the broker's store mapped into this process (a worker, a client on the
 * same machine), or the store of the broker this process hosts (the
 * primary). Each call says when the broker must run the command instead
 * (someone listens for changes, the broker is closing): NOT_LOCAL.
 * Native errors come out as ShmErrors.
 */
class LocalStore {
  /** `slot`: this process's slot in a mapped store; `close`: lets it go. */
  constructor(native, id, { slot = null, close = () => {} } = {}) {
    this.native = native;
    this.id = id;
    this.slot = slot;
    this.close = close;
    /** Where reads are copied (see SCRATCH_START). */
    this.scratch = Buffer.allocUnsafeSlow(SCRATCH_START);
  }

  /** A data command's reply, or NOT_LOCAL. */
  call(args) {
    let reply;
    try {
      reply = this.native.localStoreCall(this.id, args);
    } catch (error) {
      throw fromNative(error);
    }
    return reply === undefined ? NOT_LOCAL : reply;
  }

  /** `call(['SET', key, value])` without the array: its reply, or NOT_LOCAL. */
  write(key, value) {
    let reply;
    try {
      reply = this.native.localStoreSet(this.id, key, value);
    } catch (error) {
      throw fromNative(error);
    }
    return reply === undefined ? NOT_LOCAL : reply;
  }

  /**
   * GET decoded at once: `decode(bytes, length, owned)` of the value, from
   * the scratch buffer it was copied into (no Buffer of it is made on the
   * way, `owned` false) or from the Buffer of its own a long value came
   * back in (`owned` true: decode may keep it); `decode(null, 0, false)` for
   * a missing key; NOT_LOCAL.
   */
  readDecoded(key, decode) {
    const found = this.#read(key);
    if (typeof found !== 'number') return decode(found, found.length, true);
    if (found === -1) return decode(null, 0, false);
    if (found < 0) return NOT_LOCAL;
    return decode(this.scratch, found, false);
  }

  /**
   * GET as a reply: the value's bytes in a Buffer (a copy out of the scratch
   * buffer, from Node's pool below 4 KiB), null for a missing key, or
   * NOT_LOCAL.
   */
  read(key) {
    const found = this.#read(key);
    if (typeof found !== 'number') return found;
    if (found === -1) return null;
    if (found < 0) return NOT_LOCAL;
    return Buffer.from(this.scratch.subarray(0, found));
  }

  /**
   * The addon's GET into the scratch buffer: the value's length, -1 (no
   * such key), -2 (ask the broker), or a Buffer of the value's own (from
   * LONG_VALUE_OFFSET on). Text that came back that way because it was
   * longer than the scratch buffer makes it grow, to take the next such read.
   */
  #read(key) {
    let found;
    try {
      found = this.native.localStoreGet(this.id, key, this.scratch);
    } catch (error) {
      throw fromNative(error);
    }
    if (typeof found === 'number') return found;
    const value = found.subarray(this.native.LONG_VALUE_OFFSET);
    if (value.length > this.scratch.length && value.length <= SCRATCH_MAX && value[0] !== 0xff) {
      let size = this.scratch.length;
      while (size < value.length) size *= 2;
      this.scratch = Buffer.allocUnsafeSlow(Math.min(size, SCRATCH_MAX));
    }
    return value;
  }
}

/**
 * Maps the store of the broker `options` names into this process (native
 * `LocalStore.attach`), or throws why it cannot.
 */
function attachLocalStore(native, options) {
  const attached = native.LocalStore.attach(options);
  return new LocalStore(native, attached.id, { slot: attached.slot, close: () => attached.close() });
}

module.exports = { LocalStore, attachLocalStore, NOT_LOCAL };

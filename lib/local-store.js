'use strict';

/**
 * The broker's store mapped into this process (native `LocalStore`), as the
 * broker backend uses it. Its calls go through the addon's plain functions,
 * which name the store by id: a napi-rs class method costs about ten times
 * a function's crossing, and these run on every data call.
 *
 * `call(args)`: a data command's reply, or undefined when the broker must run it.
 * `set(key, value)`: `call(['SET', key, value])`, its arguments converted without the array.
 * `get(key, scratch)`: GET copying the value into `scratch`: its length, -1
 * for a missing key, a Buffer of its own for a value longer than `scratch`
 * (placed so that a byte value's bytes start 8-aligned in its memory), or
 * -2 when the broker must run it.
 */
function attachLocalStore(native, options) {
  const store = native.LocalStore.attach(options);
  const { id } = store;
  return {
    slot: store.slot,
    call: (args) => native.localStoreCall(id, args),
    set: (key, value) => native.localStoreSet(id, key, value),
    get: (key, scratch) => {
      const found = native.localStoreGet(id, key, scratch);
      return typeof found === 'number' ? found : found.subarray(native.LONG_VALUE_OFFSET);
    },
    close: () => store.close(),
  };
}

module.exports = { attachLocalStore };

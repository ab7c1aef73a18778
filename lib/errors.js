'use strict';

/**
 * Every error cluster-shm raises is created here, in the caller's realm, with
 * a stable `code`. Native errors arrive as "<CODE> <message>" and are rebuilt.
 */

const CODES = Object.freeze({
  UNREACHABLE: 'ERR_SHM_UNREACHABLE',
  NO_RESOURCES: 'ERR_SHM_NO_RESOURCES',
  TIMEOUT: 'ERR_SHM_TIMEOUT',
  SERVER: 'ERR_SHM_SERVER',
  CLOSED: 'ERR_SHM_CLOSED',
  NO_BROKER: 'ERR_SHM_NO_BROKER',
  BROKER_START: 'ERR_SHM_BROKER_START',
  VALUE_TOO_LARGE: 'ERR_SHM_VALUE_TOO_LARGE',
  KEY_TOO_LARGE: 'ERR_SHM_KEY_TOO_LARGE',
  PATTERN_TOO_LARGE: 'ERR_SHM_PATTERN_TOO_LARGE',
  VALUE_TOO_DEEP: 'ERR_SHM_VALUE_TOO_DEEP',
  BAD_ARGUMENT: 'ERR_SHM_BAD_ARGUMENT',
  INVALID_ARG_TYPE: 'ERR_INVALID_ARG_TYPE',
  INVALID_ARG_VALUE: 'ERR_INVALID_ARG_VALUE',
  UNKNOWN_OPTION: 'ERR_SHM_UNKNOWN_OPTION',
  OUT_OF_RANGE: 'ERR_OUT_OF_RANGE',
  OOM: 'ERR_SHM_OOM',
  LOCK_TIMEOUT: 'ERR_SHM_LOCK_TIMEOUT',
  CONFLICT: 'ERR_SHM_CONFLICT',
  FETCH_FAILED: 'ERR_SHM_FETCH_FAILED',
  FETCH_TIMEOUT: 'ERR_SHM_FETCH_TIMEOUT',
  AUTH: 'ERR_SHM_AUTH',
  UNSAFE_SOCKET: 'ERR_SHM_UNSAFE_SOCKET',
  SNAPSHOT: 'ERR_SHM_SNAPSHOT',
  CROSSSLOT: 'ERR_SHM_CROSSSLOT',
  UNSUPPORTED: 'ERR_SHM_UNSUPPORTED',
  KEY_EVENTS_OFF: 'ERR_SHM_KEY_EVENTS_OFF',
  NATIVE_LOAD: 'ERR_SHM_NATIVE_LOAD',
  UNSUPPORTED_PLATFORM: 'ERR_SHM_UNSUPPORTED_PLATFORM',
  MISSING_PEER: 'ERR_SHM_MISSING_PEER',
  UNSAFE_DIR: 'ERR_SHM_UNSAFE_DIR',
  IGNORED_OPTION: 'ERR_SHM_IGNORED_OPTION',
  /** Node's own code for an operation cancelled through an AbortSignal. */
  ABORTED: 'ABORT_ERR',
});

/** Marks every error cluster-shm raises, whatever its class, for `instanceof ShmError`. */
const RAISED = Symbol.for('cluster-shm.error');

function withCode(error, code, extra) {
  error.code = code;
  if (extra) Object.assign(error, extra);
  Object.defineProperty(error, RAISED, { value: true });
  return error;
}

/**
 * The class of cluster-shm's errors: `err instanceof ShmError` holds for
 * every error it raises, argument errors included, which stay `TypeError`
 * and `RangeError` instances as Node's own do; `err.code` tells them apart.
 */
class ShmError extends Error {
  constructor(message, code, extra) {
    super(message);
    withCode(this, code, extra);
  }

  static [Symbol.hasInstance](value) {
    return value !== null && typeof value === 'object' && value[RAISED] === true;
  }
}

ShmError.prototype.name = 'ShmError';

function shmError(code, message, extra) {
  return new ShmError(message, code, extra);
}

function typeError(message, code = CODES.INVALID_ARG_TYPE) {
  return withCode(new TypeError(message), code);
}

function rangeError(message, code = CODES.OUT_OF_RANGE) {
  return withCode(new RangeError(message), code);
}

/** The error a call cancelled by `signal` rejects with: an AbortError, as Node's own APIs give. */
function abortError(signal, what) {
  return shmError(CODES.ABORTED, `${what}: aborted`, { name: 'AbortError', cause: signal.reason });
}

const NATIVE_MESSAGE = /^(ERR_SHM_[A-Z_]+) ([\s\S]*)$/;

/** Rebuilds an error thrown by the native addon. */
function fromNative(error) {
  // Errors made in JS (the Redis backend's) already carry their code.
  if (error && typeof error.code === 'string' && error.code.startsWith('ERR_')) return error;
  const match = NATIVE_MESSAGE.exec(error && error.message);
  if (!match) return shmError(CODES.BAD_ARGUMENT, String(error && error.message));
  const [, code, message] = match;
  if (code === CODES.SERVER) {
    // Keep the broker's (or Redis's) own error prefix, e.g. WRONGTYPE.
    const reply = message.split(' ', 1)[0];
    return shmError(reply === 'OOM' ? CODES.OOM : code, message, { reply });
  }
  return shmError(code, message);
}

module.exports = { CODES, ShmError, shmError, typeError, rangeError, abortError, fromNative };

'use strict';

const { typeError, rangeError, CODES } = require('./errors');

/** Environment variables a primary sets before forking, read by workers. */
const ENV = Object.freeze({
  /** A Redis or Valkey server (or cluster) to use instead of a broker. */
  URL: 'CLUSTER_SHM_URL',
  SOCKET: 'CLUSTER_SHM_SOCKET',
  OPTIONS: 'CLUSTER_SHM_OPTIONS',
  /** The broker's secret: a connection must AUTH with it first. */
  AUTH: 'CLUSTER_SHM_AUTH',
  /** '0': run every command over the socket instead of mapping the broker's store (for comparison). */
  LOCAL_STORE: 'CLUSTER_SHM_LOCAL_STORE',
});

const DEFAULTS = Object.freeze({
  serialization: 'json',
  connectTimeout: 5_000,
  commandTimeout: 10_000,
  maxValueBytes: 64 * 1024 * 1024,
  maxKeyBytes: 64 * 1024,
  maxMemory: 0,
  maxKeys: 0,
  evictionPolicy: 'noeviction',
  persist: null,
  lockLease: 10_000,
  // Below getOrSet's default wait (30 s), so that a caller queued behind a
  // fetch that never settles still gets its turn.
  fetchTimeout: 20_000,
  nearCache: false,
  /** Put in front of every key and lock name this handle stores (see namespace()). */
  keyPrefix: '',
});

/** Options of the broker itself: set where it runs, seen everywhere. */
const BROKER_OPTIONS = ['maxMemory', 'maxKeys', 'evictionPolicy', 'persist'];
const POLICIES = ['noeviction', 'allkeys-lru', 'volatile-ttl'];

const VALIDATORS = {
  serialization(value) {
    if (value !== 'json' && value !== 'advanced') {
      throw typeError(`serialization must be 'json' or 'advanced', got ${JSON.stringify(value)}`, CODES.INVALID_ARG_VALUE);
    }
  },
  connectTimeout: positiveMilliseconds,
  commandTimeout: positiveMilliseconds,
  lockLease: positiveMilliseconds,
  fetchTimeout: positiveMilliseconds,
  keyPrefix(value) {
    if (typeof value !== 'string') throw typeError(`keyPrefix must be a string, got ${value === null ? 'null' : typeof value}`);
    if (!value.isWellFormed()) throw typeError('keyPrefix holds a lone surrogate (half of a UTF-16 pair), which UTF-8 cannot store', CODES.INVALID_ARG_VALUE);
  },
  nearCache(value) {
    if (value === false || value === true) return;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw typeError(`nearCache must be true, false or { maxKeys, ttl }, got ${JSON.stringify(value)}`);
    }
    for (const [name, setting] of Object.entries(value)) {
      if (name === 'maxKeys') positiveCount(setting, 'nearCache.maxKeys');
      else if (name === 'ttl') positiveMilliseconds(setting, 'nearCache.ttl');
      else throw typeError(`unknown nearCache option "${name}" (known: maxKeys, ttl)`, CODES.UNKNOWN_OPTION);
    }
  },
  maxValueBytes: positiveBytes,
  maxKeyBytes: positiveBytes,
  maxMemory: nonNegativeInteger,
  maxKeys: nonNegativeInteger,
  persist(value) {
    if (value !== null && (typeof value !== 'string' || value === '')) {
      throw typeError(`persist must be a file path (or null), got ${JSON.stringify(value)}`);
    }
  },
  evictionPolicy(value) {
    if (!POLICIES.includes(value)) {
      throw typeError(`evictionPolicy must be one of ${POLICIES.join(', ')}, got ${JSON.stringify(value)}`, CODES.INVALID_ARG_VALUE);
    }
  },
};

function positiveCount(value, name) {
  if (typeof value !== 'number') throw typeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < 1) throw rangeError(`${name} must be a positive integer, got ${value}`);
}

function positiveBytes(value, name) {
  if (typeof value !== 'number') throw typeError(`${name} must be a number of bytes, got ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < 1) throw rangeError(`${name} must be a positive integer number of bytes, got ${value}`);
}

function nonNegativeInteger(value, name) {
  if (typeof value !== 'number') throw typeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < 0) throw rangeError(`${name} must be a non-negative integer (0 for no bound), got ${value}`);
}

function positiveMilliseconds(value, name) {
  if (typeof value !== 'number') throw typeError(`${name} must be a number of milliseconds, got ${typeof value}`);
  if (!Number.isFinite(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw rangeError(`${name} must be a positive, finite number of milliseconds below 2^31, got ${value}`);
  }
}

/** Checks a partial options object; unknown keys are an error, not ignored. */
function validateOptions(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw typeError('options must be an object');
  }
  for (const [name, value] of Object.entries(options)) {
    const check = VALIDATORS[name];
    if (!check) {
      throw typeError(`unknown option "${name}" (known: ${Object.keys(VALIDATORS).join(', ')})`, CODES.UNKNOWN_OPTION);
    }
    if (value !== undefined) check(value, name);
  }
  return options;
}

/** Options handed down by the primary through the environment. */
function inheritedOptions(env = process.env) {
  const text = env[ENV.OPTIONS];
  if (!text) return {};
  try {
    return validateOptions(JSON.parse(text));
  } catch {
    return {};
  }
}

/** Validates per-call options against the names a function accepts. */
function callOptions(options, allowed, fn) {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw typeError(`${fn}: options must be an object`);
  }
  for (const name of Object.keys(options)) {
    if (!allowed.includes(name)) {
      throw typeError(`${fn}: unknown option "${name}" (known: ${allowed.join(', ')})`, CODES.UNKNOWN_OPTION);
    }
  }
  return options;
}

/** A wait in milliseconds: zero or more, finite. */
function checkTimeout(timeout, fn) {
  if (typeof timeout !== 'number') throw typeError(`${fn}: timeout must be a number of milliseconds, got ${typeof timeout}`);
  if (!Number.isFinite(timeout) || timeout < 0 || timeout > 2 ** 31 - 1) {
    throw rangeError(`${fn}: timeout must be a finite number of milliseconds from 0 to 2^31-1, got ${timeout}`);
  }
  return Math.round(timeout);
}

/**
 * The longest ttl, in ms (285,000 years): beyond it a number no longer
 * holds every integer, and from 1e21 on it no longer prints as one, which
 * the server would refuse.
 */
const MAX_TTL = Number.MAX_SAFE_INTEGER;

/** A ttl in milliseconds: a positive number up to MAX_TTL, or undefined for none. */
function checkTtl(ttl, fn) {
  if (ttl === undefined) return undefined;
  if (typeof ttl !== 'number') throw typeError(`${fn}: ttl must be a number of milliseconds, got ${typeof ttl}`);
  if (!(ttl > 0 && ttl <= MAX_TTL)) {
    throw rangeError(`${fn}: ttl must be a positive number of milliseconds up to 2^53 - 1, got ${ttl}`);
  }
  return Math.max(1, Math.round(ttl));
}

module.exports = { ENV, DEFAULTS, BROKER_OPTIONS, validateOptions, inheritedOptions, callOptions, checkTtl, checkTimeout, positiveMilliseconds };

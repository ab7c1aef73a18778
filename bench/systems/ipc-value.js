'use strict';

/**
 * The IPC-based peers send values through process.send, whose default
 * serialization is JSON: a Buffer arrives as { type: 'Buffer', data: [...] }.
 * Turning it back into a Buffer is part of what using them costs, so every
 * IPC peer's get does it (a no-op for the JSON workload).
 */
function fromIpc(value) {
  if (value !== null && typeof value === 'object' && value.type === 'Buffer' && Array.isArray(value.data)) {
    return Buffer.from(value.data);
  }
  return value;
}

/** The primary's own RSS: what a JS store living in the primary costs. */
function primaryRss() {
  return { storePeak: null, rss: process.memoryUsage().rss };
}

module.exports = { fromIpc, primaryRss };

'use strict';

/**
 * An express-session store on cluster-shm, so every worker sees every
 * session:
 *
 *   const session = require('express-session');
 *   const ShmStore = require('cluster-shm/session')(session);
 *   app.use(session({ store: new ShmStore(), secret: '...', resave: false, saveUninitialized: false }));
 *
 * Options: `prefix` (default 'sess:': the sessions' namespace), `ttl` in ms for sessions whose cookie
 * has no expiry (default one day; or a function of the session), `client`
 * (a cluster-shm instance; default the module's own).
 */

const DAY = 24 * 60 * 60 * 1000;

module.exports = function clusterShmSession(session) {
  if (!session || typeof session.Store !== 'function') {
    throw new TypeError("cluster-shm/session: pass express-session: require('cluster-shm/session')(require('express-session'))");
  }

  class ShmStore extends session.Store {
    constructor(options = {}) {
      super(options);
      this.client = options.client || require('./index.js');
      this.prefix = options.prefix === undefined ? 'sess:' : String(options.prefix);
      // Sessions live in a namespace of their own: all(), length() and
      // clear() see only them, and walk them with SCAN rather than KEYS.
      this.sessions = this.prefix ? this.client.namespace(this.prefix, { separator: '' }) : this.client;
      this.ttl = options.ttl === undefined ? DAY : options.ttl;
    }

    /** Milliseconds the session lives: its cookie's expiry, else the ttl option. */
    ttlOf(sess) {
      const expires = sess && sess.cookie && sess.cookie.expires;
      if (expires) return new Date(expires).getTime() - Date.now();
      return typeof this.ttl === 'function' ? this.ttl(sess) : this.ttl;
    }

    get(sid, callback) {
      settle(this.sessions.get(sid).then((sess) => (sess === undefined ? null : sess)), callback);
    }

    set(sid, sess, callback) {
      const ttl = this.ttlOf(sess);
      if (ttl <= 0) return this.destroy(sid, callback);
      settle(this.sessions.set(sid, sess, { ttl }), callback);
    }

    touch(sid, sess, callback) {
      const ttl = this.ttlOf(sess);
      if (ttl <= 0) return this.destroy(sid, callback);
      settle(this.sessions.expire(sid, ttl), callback);
    }

    destroy(sid, callback) {
      settle(this.sessions.delete(sid), callback);
    }

    all(callback) {
      settle(
        this.sessions.keys().then(async (keys) => (keys.length ? (await this.sessions.mget(keys)).filter((s) => s !== undefined) : [])),
        callback,
      );
    }

    length(callback) {
      settle(this.sessions.size(), callback);
    }

    clear(callback) {
      settle(this.sessions.clear(), callback);
    }
  }

  return ShmStore;
};

/** Calls a Node-style callback, if any, with the outcome of a promise. */
function settle(promise, callback) {
  promise.then(
    (value) => callback && callback(null, value),
    (error) => (callback ? callback(error) : process.nextTick(() => { throw error; })),
  );
}

'use strict';

/**
 * Express middleware: a rate limit shared by every worker of the cluster,
 * on `shm.rateLimit` (one atomic broker command per request).
 *
 *   app.use(rateLimit({ points: 100, duration: 60_000 }));
 *
 * Every response carries `X-RateLimit-Limit` and `X-RateLimit-Remaining`; a
 * refused request gets `429 Too Many Requests` with `Retry-After` (seconds).
 * Options: `points` per `duration` ms, `sliding` (default true: the two-window
 * approximation, so a burst at a window edge cannot pass twice the budget),
 * `key(req)` (default the client address; behind a proxy set express's
 * `trust proxy` so `req.ip` is the client's), `prefix` of the broker keys.
 * A cluster-shm error goes to express's error handling (`next(error)`).
 */

const shm = require('cluster-shm');

function rateLimit({ points, duration, sliding = true, key = (req) => req.ip, prefix = 'ratelimit:' }) {
  return async function rateLimitMiddleware(req, res, next) {
    let result;
    try {
      result = await shm.rateLimit(prefix + key(req), { points, duration, sliding });
    } catch (error) {
      return next(error);
    }
    res.set('X-RateLimit-Limit', String(points));
    res.set('X-RateLimit-Remaining', String(result.remaining));
    if (result.allowed) return next();
    res.set('Retry-After', String(Math.max(1, Math.ceil(result.resetMs / 1000))));
    res.status(429).json({ error: 'too many requests', retryAfterMs: result.resetMs });
  };
}

module.exports = rateLimit;

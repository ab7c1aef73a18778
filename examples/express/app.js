'use strict';

/**
 * An express app in a cluster of 2 workers sharing, through cluster-shm:
 *
 * - sessions (cluster-shm/session): log in through one worker, any worker
 *   knows you;
 * - a rate limit per client address (./rate-limit.js, on shm.rateLimit):
 *   one budget for the whole cluster, 429 with Retry-After when spent;
 * - a visit counter every worker increments atomically.
 *
 *   node examples/express/app.js            # PORT (default 3000), HOST (default 127.0.0.1)
 *   curl -i http://127.0.0.1:3000/
 *   curl -i -c jar -d user=ada http://127.0.0.1:3000/login
 *   curl -i -b jar http://127.0.0.1:3000/me
 *   curl -i -b jar -X POST http://127.0.0.1:3000/logout
 *
 * Every response says which worker served it (X-Worker: its pid). Other
 * settings: RATE_LIMIT (requests per window, default 100), RATE_WINDOW_MS
 * (default 60000), SESSION_SECRET. SIGTERM or SIGINT to the primary stops the
 * workers (letting them finish their requests), then the primary.
 */

const cluster = require('node:cluster');
// In an app of your own: require('cluster-shm'). In this repository the
// package name resolves to the repository itself.
const shm = require('cluster-shm');

const WORKERS = 2;
const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST || '127.0.0.1';

if (cluster.isPrimary) {
  runPrimary();
} else {
  runWorker();
}

function runPrimary() {
  // Requiring cluster-shm above started the broker; forked workers find it.
  let listening = 0;
  let stopping = false;
  const fork = () =>
    cluster.fork().on('message', (message) => {
      if (message && message.listening && ++listening === WORKERS) {
        console.log(`listening on http://${HOST}:${message.listening.port} (primary ${process.pid}, ${WORKERS} workers)`);
      }
    });
  for (let i = 0; i < WORKERS; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    console.error(`worker ${worker.process.pid} exited (${signal || code}); starting another`);
    fork();
  });

  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`primary: ${signal}, stopping the workers`);
    // Workers stop accepting connections and exit once their requests are done.
    const workers = Object.values(cluster.workers);
    const exited = workers.map((worker) => worker.isDead() || new Promise((resolve) => worker.once('exit', resolve)));
    const force = setTimeout(() => workers.forEach((worker) => worker.process.kill('SIGKILL')), 10_000);
    force.unref();
    cluster.disconnect();
    Promise.all(exited)
      .then(() => shm.close()) // stops the broker and removes its socket
      .then(() => console.log('primary: stopped'));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function runWorker() {
  const express = require('express');
  const session = require('express-session');
  const ShmStore = require('cluster-shm/session')(session);
  const rateLimit = require('./rate-limit');

  const app = express();
  app.disable('x-powered-by');
  app.use((req, res, next) => {
    res.set('X-Worker', String(process.pid));
    next();
  });
  app.use(rateLimit({ points: Number(process.env.RATE_LIMIT || 100), duration: Number(process.env.RATE_WINDOW_MS || 60_000) }));
  app.use(
    session({
      store: new ShmStore(),
      secret: process.env.SESSION_SECRET || 'example only: set SESSION_SECRET',
      resave: false,
      saveUninitialized: false,
      cookie: { httpOnly: true, sameSite: 'lax', maxAge: 24 * 60 * 60 * 1000 },
    }),
  );
  app.use(express.urlencoded({ extended: false }));
  app.use(express.json());

  app.get('/', async (req, res) => {
    const visits = await shm.incr('visits');
    res.json({ visits, worker: process.pid, user: req.session.user || null });
  });

  app.post('/login', (req, res, next) => {
    const user = req.body && req.body.user;
    if (typeof user !== 'string' || !/^[\w.-]{1,64}$/.test(user)) {
      return res.status(400).json({ error: 'user: 1 to 64 letters, digits, _ . -' });
    }
    // A new session id at login, so an id known before cannot be reused.
    req.session.regenerate((error) => {
      if (error) return next(error);
      req.session.user = user;
      req.session.save((error) => (error ? next(error) : res.json({ user, worker: process.pid })));
    });
  });

  app.get('/me', (req, res) => {
    if (!req.session.user) return res.status(401).json({ error: 'not logged in', worker: process.pid });
    req.session.views = (req.session.views || 0) + 1;
    res.json({ user: req.session.user, views: req.session.views, worker: process.pid });
  });

  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.json({ loggedOut: true, worker: process.pid })));
  });

  // Express 5 passes rejected promises of async handlers here too.
  app.use((error, req, res, next) => {
    console.error(`worker ${process.pid}:`, error);
    res.status(500).json({ error: error.message, code: error.code });
  });

  const server = app.listen(PORT, HOST, () => process.send({ listening: { port: server.address().port } }));
}

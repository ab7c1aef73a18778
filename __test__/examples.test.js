'use strict';

// examples/express/app.js as a user runs it: a real cluster primary with 2
// workers on a port of the system's choosing (PORT=0), driven over HTTP.

const http = require('node:http');
const path = require('node:path');
const { start } = require('./helpers');

const APP = path.join(__dirname, '..', 'examples', 'express', 'app.js');
const LIMIT = 24;

/** One request on a connection of its own, so the cluster's round robin spreads them over the workers. */
function request(url, { method = 'GET', cookie, form } = {}) {
  return new Promise((resolve, reject) => {
    const body = form ? new URLSearchParams(form).toString() : undefined;
    const headers = {};
    if (cookie) headers.cookie = cookie;
    if (body) Object.assign(headers, { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) });
    const req = http.request(url, { method, headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code !== 'ESRCH';
  }
}

test('examples/express: sessions across workers, a shared visit counter and rate limit, a clean SIGTERM', async () => {
  const app = start(APP, [], { env: { PORT: '0', RATE_LIMIT: String(LIMIT), RATE_WINDOW_MS: '60000' } });
  try {
    const base = await new Promise((resolve, reject) => {
      let out = '';
      const onData = (chunk) => {
        out += chunk;
        const found = /listening on (http:\/\/\S+)/.exec(out);
        if (found) {
          app.child.stdout.off('data', onData);
          resolve(found[1]);
        }
      };
      app.child.stdout.on('data', onData);
      app.done.then(({ code, signal, stdout, stderr }) => reject(new Error(`the app exited (${code ?? signal}) before listening\n${stdout}\n${stderr}`)));
    });
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const responses = [];
    const send = async (urlPath, options) => {
      const response = await request(base + urlPath, options);
      responses.push(response);
      return response;
    };

    const first = await send('/');
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ visits: 1, worker: Number(first.headers['x-worker']), user: null });

    // Logged in through one worker...
    const login = await send('/login', { method: 'POST', form: { user: 'ada' } });
    expect(login.status).toBe(200);
    expect(login.body.user).toBe('ada');
    const cookie = login.headers['set-cookie'][0].split(';')[0];
    const loginWorker = login.headers['x-worker'];
    // ...recognised by the other.
    let other;
    for (let i = 0; i < 6 && !other; i++) {
      const me = await send('/me', { cookie });
      expect(me.status).toBe(200);
      expect(me.body.user).toBe('ada');
      if (me.headers['x-worker'] !== loginWorker) other = me;
    }
    expect(other).toBeDefined();
    expect(other.body.worker).toBe(Number(other.headers['x-worker']));
    expect((await send('/me')).status).toBe(401);

    // Every request so far counted against one budget; spend the rest.
    let refused;
    for (let i = 0; i < LIMIT + 2 && !refused; i++) {
      const response = await send('/');
      if (response.status === 429) refused = response;
    }
    expect(refused).toBeDefined();
    expect(refused.body.error).toBe('too many requests');
    expect(refused.headers['x-ratelimit-limit']).toBe(String(LIMIT));
    expect(refused.headers['x-ratelimit-remaining']).toBe('0');
    const retryAfter = Number(refused.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);

    // Exactly LIMIT requests passed, served by both workers, with the
    // remaining count going down by one each time whichever worker answered.
    const allowed = responses.filter((r) => r.status !== 429);
    expect(allowed).toHaveLength(LIMIT);
    expect(allowed.map((r) => Number(r.headers['x-ratelimit-remaining']))).toEqual(Array.from({ length: LIMIT }, (_, i) => LIMIT - 1 - i));
    const workers = new Set(allowed.map((r) => r.headers['x-worker']));
    expect(workers.size).toBe(2);
    // One visit counter for all workers; it counted only the visits that got through.
    const visits = allowed.filter((r) => 'visits' in r.body).map((r) => r.body.visits);
    expect(visits).toEqual(visits.map((_, i) => i + 1));

    // SIGTERM to the primary: the workers stop, then the primary, all cleanly.
    app.child.kill('SIGTERM');
    const { code, signal, stdout, stderr } = await app.done;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(stdout).toContain('primary: stopped');
    expect(stderr).toBe('');
    for (const pid of workers) expect(isRunning(Number(pid))).toBe(false);
  } finally {
    if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGKILL');
  }
});

'use strict';

// The PM2 recipe (examples/pm2/ecosystem.config.js) as a user runs it: real
// pm2 with a private PM2_HOME, the broker app and the web app in cluster
// mode with 2 instances, then `pm2 kill`.

const { execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { describeOn, LINUX } = require('./backend');
const { cleanEnv } = require('./helpers');

const run = promisify(execFile);
const ROOT = path.join(__dirname, '..');
const PM2 = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
const ECOSYSTEM = path.join(ROOT, 'examples', 'pm2', 'ecosystem.config.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function request(port) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        let body = '';
        res.on('data', (chunk) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
      })
      .on('error', reject);
  });
}

/** What the broker answers an unauthenticated PING with. */
function pingWithoutSecret(socket) {
  return new Promise((resolve, reject) => {
    const connection = net.createConnection(socket, () => connection.write('*1\r\n$4\r\nPING\r\n'));
    connection.once('data', (chunk) => {
      resolve(chunk.toString().trim());
      connection.destroy();
    });
    connection.on('error', reject);
  });
}

/** Live processes whose command line mentions `text`: from /proc on Linux; elsewhere (macOS has no /proc) from ps, at full width. */
function processesMentioning(text) {
  if (!LINUX) {
    return execFileSync('ps', ['-A', '-ww', '-o', 'pid=', '-o', 'args='], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.includes(text))
      .map((line) => line.trim().split(' ')[0]);
  }
  return fs
    .readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    });
}

describeOn(['embedded'], 'starts a broker of its own under pm2; runs once, in the embedded run', 'the PM2 recipe', () => {
  let work;
  let env;
  let port;
  let socket;
  const pm2 = (...args) => run(process.execPath, [PM2, ...args], { env, cwd: path.dirname(ECOSYSTEM), timeout: 60_000 });
  const logs = () => {
    const dir = path.join(work, 'pm2', 'logs');
    return fs.existsSync(dir) ? fs.readdirSync(dir).map((file) => `== ${file}\n${fs.readFileSync(path.join(dir, file), 'utf8')}`).join('\n') : '(no logs)';
  };

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-pm2-'));
    const runtime = path.join(work, 'run');
    fs.mkdirSync(runtime, { mode: 0o700 });
    port = await freePort();
    socket = path.join(runtime, 'myapp-shm', 'shm.sock');
    env = cleanEnv({ PM2_HOME: path.join(work, 'pm2'), XDG_RUNTIME_DIR: runtime, PORT: String(port) });
    await pm2('start', ECOSYSTEM);
  }, 90_000);

  afterAll(async () => {
    await pm2('kill').catch(() => {});
    fs.rmSync(work, { recursive: true, force: true });
  }, 60_000);

  test('the two web instances share one counter through the broker app', async () => {
    // Ready once an instance answers; the broker may start after the web app.
    let first;
    for (let tries = 0; ; tries++) {
      first = await request(port).catch((error) => ({ error }));
      if (first.status === 200) break;
      if (tries > 300) throw new Error(`the web app did not answer: ${JSON.stringify(first)}\n${logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // The second instance may start listening later: ask until both have
    // answered (bounded), then 20 more times.
    const answers = [];
    const pids = () => new Set(answers.map((answer) => answer.pid)).size;
    for (let tries = 0; pids() < 2 && tries < 300; tries++) {
      answers.push((await request(port)).body);
      if (pids() < 2) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (let i = 0; i < 20; i++) answers.push((await request(port)).body);
    expect({ instances: pids(), hits: answers.map((answer) => answer.hits) }).toEqual({
      instances: 2,
      hits: answers.map((_, i) => first.body.hits + 1 + i),
    });
  }, 60_000);

  test('the broker requires the secret, which the recipe keeps in a private file', async () => {
    expect(await pingWithoutSecret(socket)).toMatch(/^-NOAUTH/);
    const secretFile = path.join(path.dirname(socket), 'shm.secret');
    expect({ dir: fs.statSync(path.dirname(socket)).mode & 0o777, secret: fs.statSync(secretFile).mode & 0o777 }).toEqual({ dir: 0o700, secret: 0o600 });
  });

  test('pm2 kill stops the broker and removes its socket', async () => {
    const description = JSON.parse((await pm2('jlist')).stdout);
    expect(description.map((app) => [app.name, app.pm2_env.status]).sort()).toEqual([
      ['shm', 'online'],
      ['web', 'online'],
      ['web', 'online'],
    ]);
    await pm2('kill');
    expect({ socketLeft: fs.existsSync(socket), brokers: processesMentioning(socket) }).toEqual({ socketLeft: false, brokers: [] });
  }, 60_000);
});

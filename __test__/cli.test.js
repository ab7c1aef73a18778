'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { cleanEnv, start, serve, startHolder, stopHolder } = require('./helpers');
const { describeOn } = require('./backend');

const CLI = path.join(__dirname, '..', 'bin', 'cluster-shm.js');

function cli(args, env) {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: cleanEnv(env), timeout: 20_000 }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, stdout, stderr }),
    );
  });
}

describeOn(['embedded'], 'it talks to a broker that a primary of its own hosts (fixtures/hold.js)', 'cluster-shm stats / keys / get / monitor against a running app', () => {
  let holder;
  let env;
  beforeAll(async () => {
    const { proc, socket, secret } = await startHolder();
    holder = proc;
    env = { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret };
  });
  afterAll(() => stopHolder(holder));

  test('stats, readable and --json', async () => {
    const json = await cli(['stats', '--json'], env);
    expect(json.code).toBe(0);
    const stats = JSON.parse(json.stdout);
    expect(stats).toMatchObject({ keys: 3, evictionPolicy: 'noeviction' });
    const text = await cli(['stats'], env);
    expect(text.stdout).toMatch(/^cluster-shm \S+ at .*broker\.sock/);
    expect(text.stdout).toMatch(/keys\s+3 \(0 with a ttl\)/);
  });

  test('keys and get', async () => {
    expect((await cli(['keys', 'app:*'], env)).stdout).toBe('app:count\napp:json\napp:text\n');
    expect(JSON.parse((await cli(['keys', '--json'], env)).stdout).sort()).toEqual(['app:count', 'app:json', 'app:text']);
    expect(JSON.parse((await cli(['get', 'app:json', '--json'], env)).stdout)).toEqual({ hello: 'world', list: [1, 2, 3] });
    expect((await cli(['get', 'app:text'], env)).stdout).toBe("'plain text'\n");
    expect((await cli(['get', 'missing'], env)).stdout).toBe('(no such key)\n');
  });

  test('monitor prints a line per interval', async () => {
    const result = await cli(['monitor', '--interval', '200', '--count', '2', '--json'], env);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ keys: 3, connectedClients: expect.any(Number), opsPerSecond: expect.any(Number) });
  });

  test('a wrong secret or no broker is an error with a non-zero status', async () => {
    const wrong = await cli(['stats'], { ...env, CLUSTER_SHM_AUTH: 'nope' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/ERR_SHM_AUTH/);
    expect(wrong.stderr).not.toContain(env.CLUSTER_SHM_AUTH);
    const nowhere = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-cli-empty-'));
    fs.chmodSync(nowhere, 0o700);
    const none = await cli(['stats'], { XDG_RUNTIME_DIR: nowhere });
    expect({ code: none.code, stderr: none.stderr }).toEqual({
      code: 1,
      stderr: `cluster-shm: no running broker found in ${path.join(nowhere, 'cluster-shm')}: start your app or cluster-shm serve, or pass --socket\n`,
    });
    fs.rmSync(nowhere, { recursive: true });
  });
});

describeOn(['embedded'], 'it starts brokers of its own, listed in a runtime directory of its own', 'cluster-shm finds running apps', () => {
  let runtime;
  let app;
  let appInfo;
  const env = () => ({ XDG_RUNTIME_DIR: runtime });
  beforeAll(async () => {
    runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-cli-runtime-'));
    fs.chmodSync(runtime, 0o700);
    app = start('hold.js', [], { env: { XDG_RUNTIME_DIR: runtime, CLUSTER_SHM_NAME: 'shop' } });
    appInfo = await app.waitFor((m) => m.socket);
  });
  afterAll(async () => {
    app.child.kill('SIGTERM');
    await app.done;
    fs.rmSync(runtime, { recursive: true, force: true });
  });

  test('the app writes a private connection file, and ls lists it', async () => {
    const file = path.join(runtime, 'cluster-shm', `broker-${appInfo.pid}.json`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const listed = await cli(['ls', '--json'], env());
    expect(JSON.parse(listed.stdout)).toEqual([
      { pid: appInfo.pid, name: 'shop', socket: appInfo.socket, startedAt: expect.any(String), command: expect.stringContaining('hold.js') },
    ]);
    const text = await cli(['ls'], env());
    expect(text.stdout.split('\n')[0]).toMatch(/^PID\s+NAME\s+STARTED\s+SOCKET\s+COMMAND$/);
  });

  test('with one app running, stats, keys, get, set and del need no flags; --pid and --name pick it too', async () => {
    const stats = await cli(['stats', '--json'], env());
    expect({ code: stats.code, keys: JSON.parse(stats.stdout).keys }).toEqual({ code: 0, keys: 3 });
    expect((await cli(['set', 'cli:n', '42', '--pid', String(appInfo.pid)], env())).stdout).toBe('OK\n');
    expect((await cli(['set', 'cli:text', 'not json', '--name', 'shop', '--ttl', '60000'], env())).stdout).toBe('OK\n');
    expect((await cli(['set', 'cli:digits', '007', '--string'], env())).code).toBe(0);
    const values = await Promise.all(['cli:n', 'cli:text', 'cli:digits'].map(async (key) => JSON.parse((await cli(['get', key, '--json'], env())).stdout)));
    expect(values).toEqual([42, 'not json', '007']);
    expect((await cli(['keys', 'cli:*'], env())).stdout).toBe('cli:digits\ncli:n\ncli:text\n');
    expect((await cli(['del', 'cli:n', 'cli:text', 'cli:digits', 'cli:none'], env())).stdout).toBe('3\n');
  });

  test('with two running, a command without --pid or --name is a usage error naming both; a killed one drops off the list', async () => {
    const other = serve(['--socket', path.join(runtime, 'other.sock'), '--name', 'other'], { env: env() });
    await other.listening;
    const listed = JSON.parse((await cli(['ls', '--json'], env())).stdout);
    expect(listed.map((b) => b.name).sort()).toEqual(['other', 'shop']);
    const ambiguous = await cli(['stats'], env());
    expect({ code: ambiguous.code, stderr: ambiguous.stderr }).toEqual({
      code: 2,
      stderr: `cluster-shm: 2 brokers are running (pids ${listed.map((b) => b.pid).join(', ')}): choose one with --pid or --name (cluster-shm --help shows the usage)\n`,
    });
    expect(JSON.parse((await cli(['stats', '--name', 'other', '--json'], env())).stdout).keys).toBe(0);
    other.child.kill('SIGKILL');
    await other.exited;
    expect(JSON.parse((await cli(['ls', '--json'], env())).stdout).map((b) => b.name)).toEqual(['shop']);
  });

  test('an app that exits removes its connection file', async () => {
    const short = start('hold.js', ['exit-after', '10'], { env: { XDG_RUNTIME_DIR: runtime, CLUSTER_SHM_NAME: 'short' } });
    const { pid } = await short.waitFor((m) => m.socket);
    const file = path.join(runtime, 'cluster-shm', `broker-${pid}.json`);
    const whileRunning = fs.existsSync(file);
    await short.done;
    expect({ whileRunning, afterExit: fs.existsSync(file) }).toEqual({ whileRunning: true, afterExit: false });
  });
});

describe('cluster-shm usage and runtime errors', () => {
  test.each([
    [['stats', '--bogus', '1'], 'unknown option "--bogus"'],
    [['get'], 'get takes 1 argument, got 0'],
    [['set', 'k'], 'set takes 2 arguments, got 1'],
    [['stats', '--pid', 'x'], '--pid takes a process id, not "x"'],
    [['frobnicate'], 'unknown command "frobnicate"'],
  ])('%j is a usage error: status 2, one line and a hint', async (args, why) => {
    const result = await cli(args, {});
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 2, stderr: `cluster-shm: ${why} (cluster-shm --help shows the usage)\n` });
  });

  test('a socket that does not exist is a runtime error naming it, without waiting for a broker', async () => {
    const result = await cli(['stats', '--socket', '/nonexistent/broker.sock'], {});
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 1, stderr: 'cluster-shm: cannot reach a broker at /nonexistent/broker.sock: no such file\n' });
  });

  test('serve on a socket whose directory is missing is a runtime error naming it', async () => {
    const result = await cli(['serve', '--socket', '/nonexistent/broker.sock'], {});
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 1, stderr: 'cluster-shm: cannot listen on /nonexistent/broker.sock: the directory /nonexistent does not exist\n' });
  });

  test('--version prints the package version', async () => {
    expect(await cli(['--version'], {})).toEqual({ code: 0, stdout: `${require('../package.json').version}\n`, stderr: '' });
  });
});

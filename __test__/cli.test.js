'use strict';

const path = require('node:path');
const { execFile } = require('node:child_process');
const { cleanEnv, startHolder, stopHolder } = require('./helpers');
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
    const none = await cli(['stats'], {});
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no broker/);
  });
});

'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, serve } = require('./helpers');
const { describeOn } = require('./backend');


describeOn(['embedded'], 'it starts standalone brokers of its own', 'cluster-shm serve: a standalone broker', () => {
  let dir;
  let socket;
  let broker;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-serve-'));
    socket = path.join(dir, 'broker.sock');
    broker = serve(['--socket', socket, '--max-keys', '1000']);
    await broker.listening;
  });
  afterAll(async () => {
    broker.child.kill('SIGTERM');
    await broker.exited;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('two separate node processes share state through it', async () => {
    const env = { CLUSTER_SHM_SOCKET: socket };
    const writer = await run('client.js', ['set:shared={"from":"process A","n":[1,2]}'], { env });
    expect(writer.messages[0]).toEqual({ role: 'client', socket });
    expect(writer.messages[1]).toMatchObject({ ok: true });
    const reader = await run('client.js', ['get:shared'], { env });
    expect(reader.messages[1]).toMatchObject({ ok: true, value: { from: 'process A', n: [1, 2] } });
  });

  test('a cluster primary pointed at it starts no broker of its own; its workers use the standalone one', async () => {
    const { messages } = await run('scenario.js', [], { env: { CLUSTER_SHM_SOCKET: socket } });
    const [{ workers, visits, role }] = messages;
    expect(role).toBe('client');
    expect(visits).toBe(2);
    expect(workers.map((w) => [w.greeting, w.role])).toEqual([
      ['hello from the primary', 'worker'],
      ['hello from the primary', 'worker'],
    ]);
    const reader = await run('client.js', ['get:greeting'], { env: { CLUSTER_SHM_SOCKET: socket } });
    expect(reader.messages[1].value).toBe('hello from the primary');
  });

  test('shm.connect({ socket }) reaches it from a process that hosts a broker of its own', async () => {
    await run('client.js', ['set:via-env="written through CLUSTER_SHM_SOCKET"'], { env: { CLUSTER_SHM_SOCKET: socket } });
    const { messages } = await run('connect-socket.js', [socket]);
    expect(messages[0]).toEqual({
      ownRole: 'primary',
      ownSeesIt: false,
      connectedRole: 'client',
      read: 'written through CLUSTER_SHM_SOCKET',
      written: true,
      badTarget: { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' },
    });
    const reader = await run('client.js', ['get:via-connect'], { env: { CLUSTER_SHM_SOCKET: socket } });
    expect(reader.messages[1].value).toEqual({ n: 1 });
  });

  test('its options are applied and the socket is private', async () => {
    expect(broker.output()).toMatch(/max keys 1000, eviction allkeys-lru/);
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
  });

  test('a second broker on the same socket is refused', async () => {
    const second = serve(['--socket', socket]);
    const result = await second.exited;
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/already listening/);
  });
});

describeOn(['embedded'], 'it starts standalone brokers of its own', 'cluster-shm serve lifecycle', () => {
  test.each(['SIGTERM', 'SIGINT'])('%s stops it cleanly and removes the socket', async (signal) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-serve-'));
    const socket = path.join(dir, 'broker.sock');
    const broker = serve(['--socket', socket]);
    await broker.listening;
    expect(fs.existsSync(socket)).toBe(true);
    broker.child.kill(signal);
    const result = await broker.exited;
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(/removed/);
    expect(fs.existsSync(socket)).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a process given a secret for a broker that has none is refused, saying so', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-serve-'));
    const socket = path.join(dir, 'broker.sock');
    const broker = serve(['--socket', socket]);
    try {
      await broker.listening;
      const { messages } = await run('client.js', ['get:k'], { env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: 'a-secret' } });
      expect(messages[1]).toMatchObject({ ok: false, error: { code: 'ERR_SHM_AUTH' } });
      expect(messages[1].error.message).toMatch(/has no secret/);
      expect(messages[1].error.message).not.toMatch(/a-secret/);
    } finally {
      broker.child.kill('SIGTERM');
      await broker.exited;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--auth-file makes connections authenticate with its secret', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-serve-'));
    const socket = path.join(dir, 'broker.sock');
    const secretFile = path.join(dir, 'secret');
    fs.writeFileSync(secretFile, 'file-secret-123\n', { mode: 0o600 });
    const broker = serve(['--socket', socket, '--auth-file', secretFile]);
    await broker.listening;
    try {
      expect(broker.output()).not.toContain('file-secret-123');
      const refused = await run('client.js', ['set:k=1'], { env: { CLUSTER_SHM_SOCKET: socket } });
      expect(refused.messages[1]).toMatchObject({ ok: false, error: { code: 'ERR_SHM_AUTH' } });
      const env = { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: 'file-secret-123' };
      await run('client.js', ['set:k=1'], { env });
      expect((await run('client.js', ['get:k'], { env })).messages[1]).toMatchObject({ ok: true, value: 1 });
    } finally {
      broker.child.kill('SIGTERM');
      await broker.exited;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a final snapshot that cannot be written makes it exit with status 1, saying why', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-serve-'));
    const snapshotDir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-serve-snapshot-'));
    const snapshot = path.join(snapshotDir, 'store.snapshot');
    const broker = serve(['--socket', path.join(dir, 'broker.sock'), '--persist', snapshot]);
    try {
      await broker.listening;
      fs.rmSync(snapshotDir, { recursive: true });
      broker.child.kill('SIGTERM');
      const result = await broker.exited;
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`could not write the snapshot ${snapshot}: No such file or directory`);
    } finally {
      broker.child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('bad flags exit with status 2 and one line saying what is wrong, with a hint', async () => {
    const results = [];
    for (const args of [['--bogus', '1'], ['--max-memory', 'lots'], ['--eviction-policy', 'random']]) {
      const { code, stderr } = await serve(args).exited;
      results.push({ args, code, lines: stderr.trim().split('\n').length, hint: stderr.includes('(cluster-shm --help shows the usage)') });
    }
    expect(results).toEqual([
      { args: ['--bogus', '1'], code: 2, lines: 1, hint: true },
      { args: ['--max-memory', 'lots'], code: 2, lines: 1, hint: true },
      { args: ['--eviction-policy', 'random'], code: 2, lines: 1, hint: true },
    ]);
  });
});

'use strict';

const net = require('node:net');
const { execFile } = require('node:child_process');
const { startHolder, stopHolder, testWithTool } = require('./helpers');
const { describeOn } = require('./backend');

function exec(file, args, input) {
  return new Promise((resolve) => {
    const child = execFile(file, args, { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code ?? error.signal : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin.end(input);
  });
}

/**
 * Writes raw bytes to the socket and collects the reply bytes until `enough`
 * says so or the peer closes.
 */
function raw(socket, payload, enough = () => false) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let length = 0;
    const connection = net.createConnection(socket, () => connection.write(payload));
    connection.on('data', (chunk) => {
      chunks.push(chunk);
      length += chunk.length;
      if (enough(length, chunks)) connection.end();
    });
    connection.on('close', () => resolve(Buffer.concat(chunks)));
    connection.on('error', reject);
  });
}

function command(...args) {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

describeOn(['embedded'], 'it talks to a broker that a primary of its own hosts (fixtures/hold.js)', 'Redis clients against a running app', () => {
  let holder;
  let socket;
  let secret;
  // redis-cli / redis-benchmark arguments that reach the app's broker.
  const to = (...args) => ['-s', socket, '-a', secret, '--no-auth-warning', ...args];
  beforeAll(async () => ({ proc: holder, socket, secret } = await startHolder()));
  afterAll(() => stopHolder(holder));

  // A raw connection's first command: AUTH, answered +OK.
  const authed = (payload) => command('AUTH', secret) + payload;

  // Asks the app (the primary, in-process) for a key's value.
  const askApp = async (key) => {
    const from = holder.messages.length;
    holder.child.stdin.write(`get ${key}\n`);
    return (await holder.waitFor((m) => m.key === key && holder.messages.indexOf(m) >= from)).value;
  };

  testWithTool('redis-cli', 'redis-cli -s reads what the app stored, and the app reads what redis-cli stores', async () => {
    const get = await exec('redis-cli', to('GET', 'app:json'));
    expect(get.stdout.trim()).toBe('{"hello":"world","list":[1,2,3]}');
    expect((await exec('redis-cli', to('GET', 'app:count'))).stdout.trim()).toBe('41');
    expect((await exec('redis-cli', to('SET', 'from:cli', '{"via":"redis-cli"}'))).stdout.trim()).toBe('OK');
    expect((await exec('redis-cli', to('INCR', 'app:count'))).stdout.trim()).toBe('42');
    expect(await askApp('from:cli')).toEqual({ via: 'redis-cli' });
    expect(await askApp('app:count')).toBe(42);
    const keys = (await exec('redis-cli', to('KEYS', 'app:*'))).stdout.trim().split('\n').sort();
    expect(keys).toEqual(['app:count', 'app:json', 'app:text']);
    const info = (await exec('redis-cli', to('INFO'))).stdout;
    expect(info).toMatch(/^redis_version:7\.0\.\d+\r?$/m);
    expect(info).toMatch(/^cluster_shm_version:\S+/m);
    expect(info).toMatch(/^db0:keys=4,expires=0/m);
  });

  testWithTool('redis-cli', 'redis-cli in interactive-style input: inline commands, errors keep the connection usable', async () => {
    const session = await exec('redis-cli', to(), 'PING\nNOSUCH a b\nSET "spaced key" "a b"\nGET "spaced key"\nDBSIZE\n');
    expect(session.stdout.split('\n').filter(Boolean)).toEqual([
      'PONG',
      "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' ",
      'OK',
      'a b',
      '5',
    ]);
    const raw = await exec('redis-cli', to('COMMAND', 'COUNT'));
    expect(Number(raw.stdout)).toBeGreaterThan(30);
  });

  test('ioredis connects with { path } (HELLO 3 falls back to RESP2, INFO ready check) and pipelines', async () => {
    const Redis = require('ioredis');
    const redis = new Redis({ path: socket, password: secret, lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      expect(await redis.get('app:text')).toBe('"plain text"');
      expect(await redis.set('from:ioredis', '[1,2]', 'PX', 60_000)).toBe('OK');
      const pipeline = redis.pipeline();
      for (let i = 0; i < 500; i++) pipeline.incr('ioredis:counter');
      pipeline.get('ioredis:counter');
      const results = await pipeline.exec();
      expect(results.at(-1)).toEqual([null, '500']);
      expect(await redis.pttl('from:ioredis')).toBeGreaterThan(59_000);
      expect(await askApp('from:ioredis')).toEqual([1, 2]);
      await expect(redis.call('NOSUCH')).rejects.toThrow(/unknown command 'NOSUCH'/);
      expect(await redis.ping()).toBe('PONG');
      // The handshake after the RESP2 fallback named the library.
      expect(await redis.client('INFO')).toMatch(/ resp=2 lib-name=ioredis lib-ver=\S+/);
    } finally {
      redis.disconnect();
    }
  });

  testWithTool('redis-benchmark', 'redis-benchmark -s runs its default handshake and pipelined GET/SET/PING to the end', async () => {
    for (const pipeline of ['1', '16']) {
      const result = await exec('redis-benchmark', ['-s', socket, '-a', secret, '-n', '2000', '-c', '4', '-P', pipeline, '-t', 'ping,set,get', '-q']);
      expect({ pipeline, code: result.code, stderr: result.stderr }).toEqual({ pipeline, code: 0, stderr: '' });
      for (const test of ['PING_INLINE', 'PING_MBULK', 'SET', 'GET']) expect(result.stdout).toMatch(new RegExp(`${test}: [\\d.]+ requests per second`));
    }
  });

  test('a pipeline of large values is answered while the broker keeps reading (no read-after-write stall)', async () => {
    const size = 1024 * 1024;
    const count = 40;
    const value = Buffer.alloc(size, 'v').toString();
    let payload = '';
    for (let i = 0; i < count; i++) payload += command('SET', `big:${i}`, value) + command('GET', `big:${i}`);
    const expectedLength = 5 + count * (5 + `$${size}\r\n`.length + size + 2);
    const reply = await raw(socket, authed(payload), (length) => length >= expectedLength);
    expect(reply.length).toBe(expectedLength);
    const one = `+OK\r\n$${size}\r\n${value}\r\n`;
    expect(reply.subarray(5, 5 + one.length).toString()).toBe(one);
    expect(reply.subarray(reply.length - one.length).toString()).toBe(one);
  });

  test('malformed input gets a protocol error and closes only that connection', async () => {
    const reply = await raw(socket, '*2\r\n$3\r\nGET\r\n:1\r\n');
    expect(reply.toString()).toBe("-ERR Protocol error: expected '$', got ':'\r\n");
    const bad = await raw(socket, '*abc\r\n');
    expect(bad.toString()).toBe('-ERR Protocol error: invalid multibulk length\r\n');
    const fine = await raw(socket, authed(command('GET', 'app:count') + 'PING\r\n'), (length) => length >= 16);
    expect(fine.toString()).toMatch(/^\+OK\r\n\$2\r\n4[12]\r\n\+PONG\r\n$/);
  });

  test('QUIT answers OK and closes; commands after it are not run', async () => {
    const reply = await raw(socket, authed(command('QUIT') + command('SET', 'after-quit', '1')));
    expect(reply.toString()).toBe('+OK\r\n+OK\r\n');
    expect(await askApp('after-quit')).toBeUndefined();
  });

  test('a connection without the secret gets NOAUTH for everything but AUTH, and a wrong secret WRONGPASS', async () => {
    const reply = await raw(socket, command('GET', 'app:count') + command('SET', 'intruder', '1') + 'PING\r\n' + command('AUTH', 'guess') + command('QUIT'));
    expect(reply.toString()).toBe(
      '-NOAUTH Authentication required.\r\n'.repeat(3) + '-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n',
    );
    expect(await askApp('intruder')).toBeUndefined();
  });

  testWithTool('redis-cli', 'redis-cli without the secret is refused', async () => {
    const result = await exec('redis-cli', ['-s', socket, 'GET', 'app:count']);
    expect(result.stdout.trim()).toBe('NOAUTH Authentication required.');
  });
});

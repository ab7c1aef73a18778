'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, start, stopProcess } = require('./helpers');
const { describeOn } = require('./backend');

const expected = {
  'get(1)': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'get()': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'set(null, 1)': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'has({})': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'delete(Symbol)': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'keys(5)': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'mget("a")': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'mget([1])': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'mset(5)': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'mset([["a"]])': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'mset([[1, 2]])': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'incr("k", "1")': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'incr("k", NaN)': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set undefined': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'set function': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'set with unknown option': ['TypeError', 'ERR_SHM_UNKNOWN_OPTION'],
  'set with non-object options': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'set ttl -1': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set ttl 0': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set ttl NaN': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set ttl Infinity': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set ttl "5"': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'expire ttl missing': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
  'server error: unknown command': ['ShmError', 'ERR_SHM_SERVER'],
  'server error: incr on a string': ['ShmError', 'ERR_SHM_SERVER'],
  'value too large': ['RangeError', 'ERR_SHM_VALUE_TOO_LARGE'],
  'command MULTI on the shared connection': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'command SUBSCRIBE on the shared connection': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'key too large': ['RangeError', 'ERR_SHM_KEY_TOO_LARGE'],
  'lock name too large': ['RangeError', 'ERR_SHM_KEY_TOO_LARGE'],
  'set("a\\ud800b") (a lone surrogate)': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'get("\\udc00")': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'mset with a lone surrogate in a key': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'lock("\\ud800")': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'keys("a\\ud800*")': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'set ttl 1e20': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set ttl 2^53': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'expire ttl 1e20': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'lock ttl 1e20': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'getOrSet ttl 1e20': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'rateLimit duration 1e20': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'rateLimit points 1e20': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'incr past 2^53': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'decr past -2^53': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'set an array nested 10,000 deep': ['RangeError', 'ERR_SHM_VALUE_TOO_DEEP'],
  'set a Map holding an array nested 10,000 deep (advanced)': ['RangeError', 'ERR_SHM_VALUE_TOO_DEEP'],
  'publish an object nested 10,000 deep': ['RangeError', 'ERR_SHM_VALUE_TOO_DEEP'],
  'command SHM.LOCK … WAIT with WAIT as a Buffer': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'command SHM.LOCK … wait with wait as a Uint8Array': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'command CLIENT TRACKING with TRACKING as a Buffer': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'keys with a pattern over 1024 bytes': ['RangeError', 'ERR_SHM_PATTERN_TOO_LARGE'],
  'subscribe to a pattern over 1024 bytes': ['RangeError', 'ERR_SHM_PATTERN_TOO_LARGE'],
  'watch a pattern over 1024 bytes': ['RangeError', 'ERR_SHM_PATTERN_TOO_LARGE'],
  'configure unknown option': ['TypeError', 'ERR_SHM_UNKNOWN_OPTION'],
  'configure bad serialization': ['TypeError', 'ERR_INVALID_ARG_VALUE'],
  'configure negative timeout': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'configure fetchTimeout 0': ['RangeError', 'ERR_OUT_OF_RANGE'],
  'getOrSet fetchTimeout "1"': ['TypeError', 'ERR_INVALID_ARG_TYPE'],
};

/** What the fixture reports beside the errors. */
const NOT_ERRORS = ['falsy values are values', 'counters refused past 2^53 keep their value', 'the longest ttl, 2^53 - 1 ms, is taken', 'a pattern of 1024 bytes is taken'];

describe('argument and usage errors', () => {
  let report;
  beforeAll(async () => {
    ({ messages: [report] } = await run('errors.js'));
  });

  test.each(['primary', 'worker'])('in the %s: each bad call rejects its Promise with the right class and code', (side) => {
    const got = {};
    for (const [name, error] of Object.entries(report[side])) {
      if (NOT_ERRORS.includes(name)) continue;
      got[name] = error && [error.name, error.code];
      // Never a synchronous throw: every API call returns a Promise.
      expect({ name, promise: error && error.returnedPromise }).toEqual({ name, promise: true });
    }
    expect(got).toEqual(expected);
  });

  test.each(['primary', 'worker'])('in the %s: 0, "", false and null are stored and read back as themselves', (side) => {
    expect(report[side]['falsy values are values']).toBeNull();
  });

  test.each(['primary', 'worker'])('in the %s: an increment refused past 2^53 changes nothing: the counter keeps its value', (side) => {
    expect(report[side]['counters refused past 2^53 keep their value']).toEqual([Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]);
  });

  test.each(['primary', 'worker'])('in the %s: the longest ttl, 2^53 - 1 ms, is taken by set, expire, lock and rateLimit', (side) => {
    expect(report[side]['the longest ttl, 2^53 - 1 ms, is taken']).toEqual({ setTtl: true, expired: true, locked: 'number', allowed: true });
  });

  test.each(['primary', 'worker'])('in the %s: a pattern of 1024 bytes, the most there may be, is taken', (side) => {
    expect(report[side]['a pattern of 1024 bytes is taken']).toEqual([]);
  });

  test('server errors keep the broker text', () => {
    expect(report.worker['server error: unknown command'].message).toBe("ERR unknown command 'NOPE', with args beginning with: 'x' ");
    expect(report.primary['server error: incr on a string'].message).toBe('ERR value is not an integer or out of range');
  });

  test('after close(), calls reject with ERR_SHM_CLOSED in the primary and in a worker', () => {
    expect(report.workerAfterClose).toMatchObject({ code: 'ERR_SHM_CLOSED', returnedPromise: true });
    expect(report.primaryAfterClose).toMatchObject({ code: 'ERR_SHM_CLOSED', returnedPromise: true });
  });
});

describeOn(['embedded'], 'these start, stall and remove brokers of their own (redis.test.js covers the same failures with Redis)', 'failures reaching the broker', () => {
  test('a worker whose primary never loaded cluster-shm gets ERR_SHM_NO_BROKER at once, saying how to fix it', async () => {
    const { messages } = await run('no-broker.js');
    const [{ error, role }] = messages;
    expect(role).toBe('worker');
    expect(error.code).toBe('ERR_SHM_NO_BROKER');
    expect(error.message).toMatch(/require\('cluster-shm'\) to the primary before cluster\.fork\(\)/);
    expect(error.message).toMatch(/CLUSTER_SHM_SOCKET/);
  });

  test('a socket nobody listens on is ERR_SHM_UNREACHABLE after the connect timeout', async () => {
    const { messages } = await run('client.js', ['get:k'], {
      env: { CLUSTER_SHM_SOCKET: path.join(os.tmpdir(), 'cluster-shm-test-missing', 'broker.sock'), CLUSTER_SHM_OPTIONS: '{"connectTimeout":300}' },
    });
    expect(messages[0].role).toBe('client');
    expect(messages[1]).toMatchObject({ ok: false, error: { code: 'ERR_SHM_UNREACHABLE' } });
    expect(messages[1].error.message).toMatch(/within 300 ms/);
  });

  test('calls of a connected worker reject with ERR_SHM_UNREACHABLE once the broker is gone', async () => {
    const { messages } = await run('broker-gone.js');
    const [{ before, first, second }] = messages;
    expect(before).toBe(1);
    expect(first.code).toBe('ERR_SHM_UNREACHABLE');
    expect(second.code).toBe('ERR_SHM_UNREACHABLE');
  });

  test('a broker that stops answering makes calls reject with ERR_SHM_TIMEOUT', async () => {
    const holder = start('hold.js');
    const { socket, secret } = await holder.waitFor((m) => m.socket);
    // Over the socket: data calls on the store mapped into the client would
    // not need the stopped broker (see the next test).
    const client = start('client.js', ['set:k=1', 'stdin', 'get:k'], {
      env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret, CLUSTER_SHM_OPTIONS: '{"commandTimeout":300}', CLUSTER_SHM_LOCAL_STORE: '0' },
    });
    try {
      await client.waitFor((m) => m.waiting);
      expect(client.messages[1]).toMatchObject({ step: 'set:k=1', ok: true });
      await stopProcess(holder.child);
      client.child.stdin.write('go\n');
      const result = await client.waitFor((m) => m.step === 'get:k');
      expect(result.error).toMatchObject({ code: 'ERR_SHM_TIMEOUT', message: 'no reply from the broker within 300 ms' });
    } finally {
      holder.child.kill('SIGCONT');
      holder.child.kill('SIGTERM');
      client.child.kill('SIGTERM');
      await Promise.all([holder.done, client.done]);
    }
  });

  test('while the broker is stopped, data calls still run on the store mapped into the process; others time out', async () => {
    const holder = start('hold.js');
    const { socket, secret } = await holder.waitFor((m) => m.socket);
    const client = start('client.js', ['set:k=1', 'stdin', 'get:k', 'lock:l'], {
      env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret, CLUSTER_SHM_OPTIONS: '{"commandTimeout":300}' },
    });
    try {
      await client.waitFor((m) => m.waiting);
      await stopProcess(holder.child);
      client.child.stdin.write('go\n');
      const lock = await client.waitFor((m) => m.step === 'lock:l');
      const get = client.messages.find((m) => m.step === 'get:k');
      expect({ get, lock }).toMatchObject({
        get: { step: 'get:k', ok: true, value: 1 },
        lock: { step: 'lock:l', error: { code: 'ERR_SHM_TIMEOUT' } },
      });
    } finally {
      holder.child.kill('SIGCONT');
      holder.child.kill('SIGTERM');
      client.child.kill('SIGTERM');
      await Promise.all([holder.done, client.done]);
    }
  });

  test('a process out of file descriptors gets ERR_SHM_NO_RESOURCES saying so, for calls and subscriptions, and connects once it has one again', async () => {
    const holder = start('hold.js');
    const { socket, secret } = await holder.waitFor((m) => m.socket);
    try {
      const { messages } = await run('low-fd-limit.js', ['exhaust-fds', 'get:app:count', 'subscribe:news', 'free-fds', 'get:app:count', 'subscribe:news'], {
        env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret, CLUSTER_SHM_OPTIONS: '{"connectTimeout":300}' },
      });
      // Calls and subscriptions alike (they share the process's connection).
      expect(messages.slice(1, 4)).toMatchObject([
        { step: 'exhaust-fds', error: 'EMFILE' },
        { step: 'get:app:count', ok: false, error: { code: 'ERR_SHM_NO_RESOURCES' } },
        { step: 'subscribe:news', ok: false, error: { code: 'ERR_SHM_NO_RESOURCES' } },
      ]);
      expect(messages[2].error.message).toMatch(/ran out of open files \(its limit: ulimit -n\) \(EMFILE\)/);
      expect(messages[3].error.message).toMatch(/ran out of open files \(its limit: ulimit -n\) \(EMFILE\)/);
      expect(messages.slice(4)).toMatchObject([{ step: 'free-fds' }, { step: 'get:app:count', ok: true, value: 41 }, { step: 'subscribe:news', ok: true, value: 'subscribed' }]);
    } finally {
      holder.child.kill('SIGTERM');
      await holder.done;
    }
  });

  test('a lock that timed out on the client is not left held when the broker answers late', async () => {
    const holder = start('hold.js');
    const { socket, secret } = await holder.waitFor((m) => m.socket);
    const client = start('client.js', ['set:k=1', 'stdin', 'lock:L2', 'stdin', 'lock:L2'], {
      env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret, CLUSTER_SHM_OPTIONS: '{"commandTimeout":300}' },
    });
    const locks = () => client.messages.filter((m) => m.step === 'lock:L2');
    try {
      await client.waitFor((m) => m.waiting);
      await stopProcess(holder.child);
      client.child.stdin.write('go\n');
      const timedOut = await client.waitFor((m) => m.step === 'lock:L2');
      expect(timedOut).toMatchObject({ ok: false, error: { code: 'ERR_SHM_TIMEOUT' } });
      holder.child.kill('SIGCONT');
      client.child.stdin.write('go\n');
      // The broker got the first SHM.LOCK late and granted it; the client
      // took it back, so the lock is free for the next caller at once.
      await client.waitFor(() => locks().length === 2);
      expect(locks()[1]).toMatchObject({ ok: true, value: 2 });
    } finally {
      holder.child.kill('SIGCONT');
      holder.child.kill('SIGTERM');
      client.child.kill('SIGTERM');
      await Promise.all([holder.done, client.done]);
    }
  });

  test('a process of the same user without the secret, or with a wrong one, can neither read nor write', async () => {
    const holder = start('hold.js');
    const { socket, secret } = await holder.waitFor((m) => m.socket);
    try {
      for (const env of [{ CLUSTER_SHM_SOCKET: socket }, { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: 'not-the-secret' }]) {
        const { messages } = await run('client.js', ['get:app:text', 'set:app:text="overwritten"'], { env });
        for (const step of messages.slice(1)) {
          expect(step).toMatchObject({ ok: false, error: { code: 'ERR_SHM_AUTH' } });
          expect(step.error.message).not.toContain(secret);
        }
      }
      holder.child.stdin.write('get app:text\n');
      expect((await holder.waitFor((m) => m.key === 'app:text')).value).toBe('plain text');
    } finally {
      holder.child.kill('SIGTERM');
      await holder.done;
    }
  });

  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  (asRoot ? test : test.skip)('a process of another user cannot reach the socket at all [needs root to switch user]', async () => {
    const holder = start('hold.js');
    const { socket, secret } = await holder.waitFor((m) => m.socket);
    try {
      // Even with the secret: the directory (0700) keeps other users out.
      const result = await new Promise((resolve) => {
        const probe = require('node:child_process').spawn(
          process.execPath,
          ['-e', `require('net').createConnection(${JSON.stringify(socket)}).on('error', (e) => { console.log(e.code); }).on('connect', () => { console.log('connected'); process.exit(); })`],
          { uid: 65534, gid: 65534, env: { PATH: process.env.PATH, CLUSTER_SHM_AUTH: secret } },
        );
        let out = '';
        probe.stdout.on('data', (c) => (out += c));
        probe.on('exit', () => resolve(out.trim()));
      });
      expect(result).toBe('EACCES');
    } finally {
      holder.child.kill('SIGTERM');
      await holder.done;
    }
  });

  test('a primary that cannot start its broker rejects calls with ERR_SHM_BROKER_START', async () => {
    const missing = path.join(os.tmpdir(), 'cluster-shm-test-no-such-dir', 'deeper');
    expect(fs.existsSync(missing)).toBe(false);
    const { messages } = await run('client.js', ['get:k'], { env: { TMPDIR: missing } });
    expect(messages[0].role).toBe('primary');
    expect(messages[1]).toMatchObject({ ok: false, error: { code: 'ERR_SHM_BROKER_START' } });
  });

  // A Unix socket's path has room for 107 bytes on Linux, 103 on macOS,
  // where the per-user temp directory alone is about 50.
  test('a temp directory too long for a socket path: ERR_SHM_BROKER_START saying so and what to change, and nothing left in it', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-long-'));
    const long = path.join(tmp, 'd'.repeat(110 - tmp.length));
    fs.mkdirSync(long);
    try {
      const { messages } = await run('client.js', ['get:k'], { env: { TMPDIR: long, XDG_RUNTIME_DIR: '' } });
      const { error } = messages[1];
      expect({ role: messages[0].role, ok: messages[1].ok, code: error.code, left: fs.readdirSync(long) }).toEqual({
        role: 'primary',
        ok: false,
        code: 'ERR_SHM_BROKER_START',
        left: [],
      });
      expect(error.message).toMatch(/^cannot start the cluster-shm broker: its socket path \S+\/broker\.sock is \d+ bytes, over the 10[37] a Unix socket's path may have here: choose a shorter directory \(TMPDIR or XDG_RUNTIME_DIR for the default one, or the socket option\)$/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});

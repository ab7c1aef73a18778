'use strict';

const net = require('node:net');
const { startHolder, stopHolder } = require('./helpers');
const { describeOn } = require('./backend');

function command(...args) {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** A raw connection that records what it receives and whether it was closed. */
function connect(socket) {
  const connection = net.createConnection(socket);
  const state = { data: Buffer.alloc(0), closed: false, connection };
  connection.on('data', (chunk) => (state.data = Buffer.concat([state.data, chunk])));
  connection.on('close', () => (state.closed = true));
  connection.on('error', () => {});
  state.until = (test, ms = 5000) =>
    new Promise((resolve, reject) => {
      const started = Date.now();
      const check = () => {
        if (test(state)) return resolve(state);
        if (Date.now() - started > ms) return reject(new Error(`timed out; received ${JSON.stringify(state.data.toString().slice(0, 200))}`));
        setTimeout(check, 5);
      };
      check();
    });
  return state;
}

describeOn(['embedded'], 'it talks to a broker that a primary of its own hosts (fixtures/hold.js)', 'bad input on the wire', () => {
  let holder;
  let socket;
  let secret;
  const auth = () => command('AUTH', secret);

  /** One request on a fresh authenticated connection, the reply text. */
  async function ask(...args) {
    const c = connect(socket);
    c.connection.write(auth() + command(...args));
    await c.until((s) => s.data.length > 5 && s.data.toString().endsWith('\r\n') && s.data.toString().split('\r\n').length > 2);
    c.connection.destroy();
    return c.data.toString().slice(5);
  }

  async function info(field) {
    const text = await ask('INFO');
    return Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(text)[1]);
  }

  beforeAll(async () => ({ proc: holder, socket, secret } = await startHolder()));
  afterAll(() => stopHolder(holder));

  test('before AUTH only small commands are read: big counts and bulks are refused and the connection closed', async () => {
    for (const payload of ['*11\r\n', '*2\r\n$4\r\nAUTH\r\n$100000\r\n']) {
      const c = connect(socket);
      c.connection.write(payload);
      await c.until((s) => s.closed);
      expect(c.data.toString()).toMatch(/^-ERR Protocol error: invalid (multibulk|bulk) length\r\n$/);
    }
  });

  test('a bulk length past proto-max-bulk-len and an absurd array count are protocol errors', async () => {
    expect(await ask('CONFIG', 'SET', 'proto-max-bulk-len', '64kb')).toBe('+OK\r\n');
    try {
      for (const payload of ['*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$70000\r\n', '*999999999\r\n', '*-5x\r\n', '*1\r\n$-2\r\n']) {
        const c = connect(socket);
        c.connection.write(auth() + payload);
        await c.until((s) => s.closed);
        expect(c.data.toString()).toMatch(/^\+OK\r\n-ERR Protocol error: invalid (multibulk|bulk) length\r\n$/);
      }
    } finally {
      expect(await ask('CONFIG', 'SET', 'proto-max-bulk-len', '512mb')).toBe('+OK\r\n');
    }
  });

  test('a client that sends half a frame and stalls holds up nobody', async () => {
    const stalled = connect(socket);
    stalled.connection.write(auth() + '*3\r\n$3\r\nSET\r\n$8\r\nhalf:key\r\n$10\r\nhal');
    await stalled.until((s) => s.data.length >= 5);
    expect(await ask('SET', 'other', 'fine')).toBe('+OK\r\n');
    expect(await ask('GET', 'other')).toBe('$4\r\nfine\r\n');
    // The rest of the frame completes the command.
    stalled.connection.write('f-value\r\n');
    await stalled.until((s) => s.data.toString() === '+OK\r\n+OK\r\n');
    expect(await ask('GET', 'half:key')).toBe('$10\r\nhalf-value\r\n');
    stalled.connection.destroy();
  });

  test('a client flooding commands without reading stops being read; memory stays bounded, others are served', async () => {
    const flood = connect(socket);
    flood.connection.pause(); // never read the replies
    await new Promise((resolve) => flood.connection.once('connect', resolve));
    const value = 'v'.repeat(64 * 1024);
    expect(await ask('SET', 'big', value)).toBe('+OK\r\n');
    const get = command('GET', 'big');
    flood.connection.write(auth());
    // 8,000 GETs of 64 KiB would be 500 MiB of replies.
    let written = 0;
    for (let i = 0; i < 8000; i++) {
      if (!flood.connection.write(get)) await new Promise((resolve) => setTimeout(resolve, 1));
      written++;
      if (written % 2000 === 0) expect(await ask('PING')).toBe('+PONG\r\n');
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const buffered = await info('client_output_buffer_bytes');
    // Reading pauses at 16 MiB of unread replies (plus one batch of at most 1 MiB).
    expect(buffered).toBeLessThan(18 * 1024 * 1024);
    expect(buffered).toBeGreaterThan(1024 * 1024);
    flood.connection.destroy();
    await new Promise((resolve) => setTimeout(resolve, 300));
    // All freed (what remains is the asking connection's own AUTH reply in flight).
    expect(await info('client_output_buffer_bytes')).toBeLessThan(1024);
    expect(await ask('GET', 'other')).toBe('$4\r\nfine\r\n');
  });

  test('a client whose unparsed input passes client-query-buffer-limit is disconnected', async () => {
    expect(await ask('CONFIG', 'SET', 'client-query-buffer-limit', '1mb')).toBe('+OK\r\n');
    try {
      const c = connect(socket);
      c.connection.write(auth() + '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000000\r\n');
      const chunk = Buffer.alloc(64 * 1024, 'x');
      for (let i = 0; i < 64 && !c.closed; i++) {
        c.connection.write(chunk);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      await c.until((s) => s.closed);
      expect(c.data.toString()).toBe('+OK\r\n');
      expect(await ask('EXISTS', 'k')).toBe(':0\r\n');
    } finally {
      expect(await ask('CONFIG', 'SET', 'client-query-buffer-limit', '1gb')).toBe('+OK\r\n');
    }
  });
});

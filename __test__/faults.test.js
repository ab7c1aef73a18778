'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, start, serve } = require('./helpers');
const { BACKEND, testOn } = require('./backend');

/** Starts `cluster-shm serve --socket <socket>`; resolves with the process once it listens. */
async function serveAt(socket) {
  const broker = serve(['--socket', socket]);
  await broker.listening;
  return broker.child;
}

test('a worker killed mid-pipeline disturbs neither the other workers nor the store', async () => {
  const { messages } = await run('kill-mid-pipeline.js');
  const [{ reports, counter, victims, whole, connectedClients }] = messages;
  expect(reports.map((r) => r.wrong)).toEqual([0, 0]);
  expect(reports.map((r) => r.rounds >= 1000)).toEqual([true, true]);
  expect(counter).toBe(reports[0].rounds + reports[1].rounds);
  expect(victims).toBeGreaterThan(0);
  expect(whole).toBe(victims);
  // The killed worker's connections are gone; the two others remain. (A
  // shared store also counts the test harness's and other clients.)
  if (BACKEND === 'embedded') expect(connectedClients).toBeLessThanOrEqual(2);
});

testOn(['embedded'], 'it starts and kills a standalone broker of its own (redis.test.js does the same with Redis)')('a client whose standalone broker is killed fails fast, then recovers by itself when it is back', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-fault-'));
  const socket = path.join(dir, 'broker.sock');
  const serve = () => serveAt(socket);
  let broker = await serve();
  const client = start('loop-client.js', [], { env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_OPTIONS: '{"connectTimeout":300}' } });
  try {
    await client.waitFor((m) => m.ok);
    broker.kill('SIGKILL');
    const failed = await client.waitFor((m) => !m.ok);
    expect(failed.code).toBe('ERR_SHM_UNREACHABLE');
    // The killed broker left its socket file behind; a new one replaces it.
    expect(fs.existsSync(socket)).toBe(true);
    broker = await serve();
    const recovered = await client.waitFor((m) => m.ok && m.i > failed.i);
    expect(recovered.value).toBe(recovered.i);
  } finally {
    client.child.stdin.end();
    broker.kill('SIGTERM');
    await client.done;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

testOn(['embedded'], 'it starts and kills a standalone broker of its own')(
  "a subscriber whose broker is killed subscribes again by itself on the new broker, and is told it may have missed messages",
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-fault-'));
    const socket = path.join(dir, 'broker.sock');
    const Redis = require('ioredis');
    const publisher = () => new Redis({ path: socket, protocol: 2, lazyConnect: true, retryStrategy: () => null });
    let broker = await serveAt(socket);
    const client = start('subscribe-client.js', [], { env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_OPTIONS: '{"connectTimeout":300}' } });
    try {
      await client.waitFor((m) => m.subscribed);
      const first = publisher();
      expect(await first.publish('news', '"before"')).toBe(1);
      first.disconnect();
      await client.waitFor((m) => m.message === 'before');
      broker.kill('SIGKILL');
      await new Promise((resolve) => broker.once('exit', resolve));
      broker = await serveAt(socket);
      // The client makes no call: its subscription comes back by itself.
      const missed = await client.waitFor((m) => m.missed);
      const second = publisher();
      expect(await second.publish('news', '"after"')).toBe(1);
      second.disconnect();
      await client.waitFor((m) => m.message === 'after');
      expect(missed).toEqual({ missed: { reason: 'reconnected' } });
      expect(client.messages).toEqual([{ subscribed: true }, { message: 'before' }, { missed: { reason: 'reconnected' } }, { message: 'after' }]);
    } finally {
      client.child.stdin.end();
      broker.kill('SIGTERM');
      await client.done;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

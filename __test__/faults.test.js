'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, start, serve, nearCacheClient } = require('./helpers');
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

testOn(['embedded'], 'it starts and kills a standalone broker of its own (redis.test.js does the same with Redis)')(
  'the near cache: when the broker goes, it is emptied, so the new broker is read and not the old copy',
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-near-'));
    const socket = path.join(dir, 'broker.sock');
    const Redis = require('ioredis');
    const raw = () => new Redis({ path: socket, protocol: 2, lazyConnect: true, retryStrategy: () => null });
    let broker = await serveAt(socket);
    const near = nearCacheClient({ CLUSTER_SHM_SOCKET: socket });
    try {
      await near.ready;
      const writer = raw();
      await writer.set('k', '"v1"');
      await near.get('k');
      expect(await near.get('k')).toMatchObject({ value: 'v1', nearCache: { keys: 1, hits: 1 } });
      // A write through another connection reaches the near cache as an invalidation.
      await writer.set('k', '"v2"');
      writer.disconnect();
      for (let value; value !== 'v2'; ) ({ value } = await near.get('k'));
      broker.kill('SIGKILL');
      await new Promise((resolve) => broker.once('exit', resolve));
      broker = await serveAt(socket);
      const second = raw();
      await second.set('k', '"from the new broker"');
      second.disconnect();
      // (stats() needs the broker, so the near cache is looked at once the new one is up.)
      expect(await near.nearCacheEmptied()).toMatchObject({ keys: 0 });
      expect((await near.get('k')).value).toBe('from the new broker');
    } finally {
      await near.stop();
      broker.kill('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

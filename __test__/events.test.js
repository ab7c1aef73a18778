'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start, serve, testWithTool } = require('./helpers');
const { describeOn } = require('./backend');
const { startRedis } = require('./redis-server');

/** Sends `line` to the client and resolves with the next message matching `predicate`. */
function ask(client, line, predicate) {
  const seen = client.messages.length;
  client.child.stdin.write(`${line}\n`);
  return client.waitFor((m) => client.messages.indexOf(m) >= seen && predicate(m));
}

/** The events the client printed, in order. */
const events = (client) => client.messages.filter((m) => m.event).map((m) => m.event);

describeOn(['embedded'], 'it stops and restarts stores of its own', 'the handle emits error and reconnect', () => {
  test('on a broker that goes away and comes back', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-events-'));
    const socket = path.join(dir, 'broker.sock');
    let broker = serve(['--socket', socket]);
    await broker.listening;
    const client = start('events-client.js', [], { env: { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_OPTIONS: JSON.stringify({ connectTimeout: 500 }) } });
    try {
      await client.waitFor((m) => m.ready);
      expect(await ask(client, 'first', (m) => m.step === 'first')).toEqual({ step: 'first', value: undefined });
      broker.child.kill('SIGTERM');
      await broker.exited;
      await client.waitFor((m) => m.event === 'error');
      broker = serve(['--socket', socket]);
      await broker.listening;
      expect(await ask(client, 'again', (m) => m.step === 'again')).toEqual({ step: 'again', value: undefined });
      await client.waitFor((m) => m.event === 'reconnect');
      expect(client.messages.filter((m) => m.event)).toEqual([{ event: 'error', code: 'ERR_SHM_UNREACHABLE', shmError: true }, { event: 'reconnect' }]);
    } finally {
      client.child.stdin.end('exit\n');
      await client.done;
      broker.child.kill('SIGTERM');
      await broker.exited;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  testWithTool('redis-server', 'on a Redis server that goes away and comes back', async () => {
    let redis = await startRedis([], undefined);
    const client = start('events-client.js', [], { env: { CLUSTER_SHM_URL: redis.url, CLUSTER_SHM_OPTIONS: JSON.stringify({ connectTimeout: 500 }) } });
    try {
      await client.waitFor((m) => m.ready);
      expect(await ask(client, 'first', (m) => m.step === 'first')).toEqual({ step: 'first', value: undefined });
      await redis.stop({ keepDir: true });
      await client.waitFor((m) => m.event === 'error');
      redis = await redis.restart();
      // A call made while the client finds the server back may still fail; the next ones work.
      let answer;
      for (let i = 0; i < 50; i++) {
        answer = await ask(client, `again ${i}`, (m) => m.step === `again ${i}`);
        if (!answer.error) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(answer.value).toBeUndefined();
      expect(answer.error).toBeUndefined();
      await client.waitFor((m) => m.event === 'reconnect');
      expect(events(client).filter((e, i, all) => i === 0 || e !== all[i - 1])).toEqual(['error', 'reconnect']);
    } finally {
      client.child.stdin.end('exit\n');
      await client.done;
      await redis.stop();
    }
  });
});

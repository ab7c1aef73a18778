'use strict';

const { spawn, execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { run, startHolder, stopHolder, testWithTool, outputOf } = require('./helpers');
const { BACKEND, describeOn, testOn } = require('./backend');

describe('pub/sub across a real cluster', () => {
  test('every listener gets every message exactly once, in publish order per publisher', async () => {
    const { messages } = await run('pubsub.js', ['fanout']);
    const [{ perListener }] = messages;
    expect(perListener).toHaveLength(5);
    const publishers = ['primary', 'worker 1', 'worker 2', 'worker 3', 'worker 4'];
    for (const received of perListener) {
      expect(received).toHaveLength(100);
      for (const from of publishers) {
        expect(received.filter((m) => m.from === from).map((m) => m.i)).toEqual([...Array(20).keys()]);
      }
    }
  });

  test('pattern subscriptions match, a literal name with * stays literal, and unsubscribe stops delivery', async () => {
    const { messages } = await run('pubsub.js', ['patterns']);
    const [{ counts, got }] = messages;
    // orders:eu, orders:us match orders:*; ordersX does not; alerts is literal; then unsubscribed.
    expect(counts).toEqual([1, 1, 0, 1, 0]);
    expect(got).toEqual([
      { via: 'orders:*', message: 'eu-1', channel: 'orders:eu' },
      { via: 'orders:*', message: { n: 2 }, channel: 'orders:us' },
      { via: 'alerts', message: 'literal *', channel: 'alerts' },
    ]);
  });

  testOn(['embedded'], "it counts the broker's connections, which a shared store also gets from the test harness")(
    'close() while a subscribe is connecting leaves no connection behind',
    async () => {
      const { messages } = await run('pubsub.js', ['close']);
      expect(messages[0].clients).toBe(0);
      for (const outcome of messages[0].outcomes) expect(['subscribed', 'ERR_SHM_CLOSED']).toContain(outcome);
    },
  );

  test('unsubscribing and at once subscribing again leaves a live subscription, every time', async () => {
    const { messages } = await run('pubsub.js', ['flip']);
    expect(messages[0]).toMatchObject({ dead: 0, cycles: 300 });
  });

  test('watch() takes a key with glob characters literally with pattern: false, and checks maxKeyBytes', async () => {
    const { messages } = await run('watch-literal.js');
    expect(messages[0]).toEqual({
      literal: [{ key: 'a*b', event: 'set' }],
      asPattern: [
        { key: 'a*b', event: 'set' },
        { key: 'axxb', event: 'set' },
      ],
      tooLong: 'ERR_SHM_KEY_TOO_LARGE',
    });
  });

  test('key events for set, delete, expire and evict reach a watcher in another worker', async () => {
    const { messages } = await run('pubsub.js', ['keyevents']);
    expect(messages[0].events).toEqual([
      { key: 'item:a', event: 'set' },
      { key: 'item:a', event: 'del' },
      { key: 'item:t', event: 'set' },
      { key: 'item:t', event: 'expire' },
      { key: 'item:t', event: 'expired' },
      { key: 'item:old', event: 'set' },
      // Eviction needs a bound: maxKeys in the broker; Redis bounds memory only.
      ...(BACKEND === 'redis' ? [] : [{ key: 'item:old', event: 'evicted' }]),
    ]);
  });

  testOn(['embedded'], 'it sets the output limit of the broker its primary hosts')(
    "a worker that stops reading loses messages past the output limit, not its connection; others are unaffected; it is told with the next message",
    async () => {
      const { messages } = await run('pubsub.js', ['slow']);
      const [r] = messages;
      // Both stay subscribed: the broker drops the stopped worker's messages
      // past the limit rather than cut off the connection its calls share.
      expect(r.receiversFirst).toBe(2);
      expect(r.receiversLast).toBe(2);
      expect(r.healthyReceived).toBe(3000);
      // Unread output, summed over the broker's clients, stayed within the
      // 512 KiB limit of each of the two subscribers, and drained once the
      // stopped one read again.
      expect(r.maxOutput).toBeLessThanOrEqual(2 * 512 * 1024);
      expect(r.outputWhileStalled).toBeLessThanOrEqual(512 * 1024);
      expect(r.drained).toBe(0);
      expect(r.missed).toEqual({ missed: { reason: 'overflow' } });
      expect(r.after.gotAfter).toBe(true);
      expect(r.after.received).toBeLessThan(3001);
    },
  );
});

testOn(['embedded'], "it counts the broker's connections, which a shared store also gets from the test harness")(
  "a worker's subscriptions, key events, lock waits and calls share its one connection to the broker",
  async () => {
    const { messages } = await run('one-connection.js');
    expect(messages).toEqual([{ clients: 1, report: { value: 1, received: ['hello', 'set'] } }]);
  },
);

const execFileAsync = promisify(execFile);

describeOn(['embedded'], 'it talks to a broker that a primary of its own hosts (fixtures/hold.js)', 'pub/sub with redis-cli', () => {
  let holder;
  let socket;
  let secret;
  beforeAll(async () => ({ proc: holder, socket, secret } = await startHolder()));
  afterAll(() => stopHolder(holder));

  testWithTool('redis-cli', 'redis-cli subscribe receives what the app publishes', async () => {
    const cli = spawn('redis-cli', ['-s', socket, '-a', secret, '--no-auth-warning', 'subscribe', 'from-app'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const printed = outputOf(cli);
    try {
      await printed.printed('from-app');
      holder.child.stdin.write('publish from-app {"hello":"cli"}\n');
      await holder.waitFor((m) => m.published === 'from-app');
      const output = await printed.printed('{"hello":"cli"}');
      expect(output.split('\n').filter(Boolean)).toEqual(['subscribe', 'from-app', '1', 'message', 'from-app', '{"hello":"cli"}']);
    } finally {
      cli.kill();
    }
  });

  testWithTool('redis-cli', 'the app receives what redis-cli publishes', async () => {
    holder.child.stdin.write('subscribe from-cli\n');
    await holder.waitFor((m) => m.subscribed === 'from-cli');
    const { stdout } = await execFileAsync('redis-cli', ['-s', socket, '-a', secret, '--no-auth-warning', 'publish', 'from-cli', 'plain words'], { timeout: 15_000 });
    expect(stdout.trim()).toBe('1');
    expect(await holder.waitFor((m) => m.channel === 'from-cli')).toEqual({ channel: 'from-cli', message: 'plain words' });
  });
});

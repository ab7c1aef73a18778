'use strict';

const { run } = require('./helpers');
const { BACKEND, PRIMARY_ROLE, testOn } = require('./backend');

describe('sharing state across a real cluster', () => {
  test('the README example: 2 workers read the primary’s value, count themselves and leave notes the primary reads', async () => {
    const { messages } = await run('scenario.js');
    expect(messages).toEqual([
      {
        workers: [
          { greeting: 'hello from the primary', role: 'worker' },
          { greeting: 'hello from the primary', role: 'worker' },
        ],
        notes: ['worker 1 read: hello from the primary', 'worker 2 read: hello from the primary'],
        visits: 2,
        role: PRIMARY_ROLE,
      },
    ]);
  });

  test('4 workers write 1,000 keys each and every worker reads all 4,000 back', async () => {
    const { messages } = await run('many-keys.js');
    const [{ results, size }] = messages;
    expect(size).toBe(4000);
    expect(results).toHaveLength(4);
    for (const result of results) {
      expect(result.wrong).toBe(0);
      expect(result.read).toBe(4000);
    }
  });

  // The reply arrives in thousands of socket chunks; it used to be parsed
  // again from its start on each one, and a worker's keys() of 400,000
  // keys took seconds (a million timed out).
  test("a worker's keys() lists 400,000 keys", async () => {
    const { messages } = await run('worker-keys.js', ['400000']);
    expect(messages).toEqual([{ listed: 400_000, distinct: 400_000, missing: 0 }]);
  });

  // Each key used to come from the addon as a Buffer (a malloc'd backing
  // store each), turned into a string afterwards: three listings of a
  // million keys left the primary's RSS about 1.3 GiB higher for good. As
  // strings, what stays is the JS heap grown to hold one list (~150 MiB).
  testOn(['embedded'], 'it measures the memory of a primary that hosts the broker (elsewhere keys() goes over a socket)')(
    "the primary's in-process keys() of a million keys, three times, leaves its resident memory within 300 MiB of where it was",
    async () => {
      const { messages } = await run('primary-keys-memory.js');
      const [{ listed, before, after }] = messages;
      expect(listed).toEqual([1_000_000, 1_000_000, 1_000_000]);
      expect(after - before).toBeLessThan(300);
    },
  );

  test('a plain script without cluster has the whole API (served in-process on the embedded backend)', async () => {
    const { messages } = await run('in-process.js');
    expect(messages[0]).toEqual({
      role: PRIMARY_ROLE,
      get: { n: 1 },
      missing: true,
      has: [true, false],
      mget: [{ n: 1 }, 2, [3], null, 'four', false],
      keys: ['a', 'b', 'c', 'd', 'e'],
      keysPattern: ['a', 'b', 'c'],
      size: 5,
      deleted: [true, false],
      incr: [1, 42, 40, 40.5],
      counterReadsAsNumber: 40.5,
      ttlCounts: true,
      ttlOfPersistentIsInfinity: true,
      ttlOfMissing: true,
      expire: [true, false],
      persist: [true, false],
      expired: true,
      // In-process calls do not go through the socket.
      stats: { connectedClients: BACKEND === 'embedded' ? 0 : expect.any(Number), keys: 6, hasMemory: true, version: 'string' },
      rawPing: 'PONG',
      sizeAfterClear: 0,
    });
  });

  test('a worker that is done exits by itself, and so does a plain client process', async () => {
    const { messages } = await run('exit-by-itself.js');
    const [{ worker, client, fromClient }] = messages;
    expect(worker).toEqual({ code: 0, signal: null });
    expect(client.code).toBe(0);
    expect(client.lines[0].role).toBe('client');
    expect(client.lines[2]).toMatchObject({ step: 'get:from-worker', ok: true, value: 'done' });
    expect(fromClient).toBe(7);
  });
});

test('Buffers from empty to 3 MB written and read by a worker come back byte for byte, in the worker and the primary, and a read Buffer is the reader\'s own', async () => {
  const { messages } = await run('large-values.js');
  const sizes = [0, 1, 4_090, 4_091, 4_092, 65_536, 200_000, 1_048_576, 3_000_000];
  const whole = (size) => ({ size, isBuffer: true, length: size, same: true, aligned: true });
  expect(messages).toEqual([
    {
      worker: {
        reads: [...sizes, ...[...sizes].reverse()].map(whole),
        written: { 4091: { kept: true, ...whole(4_091) }, 4092: { kept: true, ...whole(4_092) }, 200000: { kept: true, ...whole(200_000) } },
        texts: [true, true],
        listened: whole(100_000),
        events: ['set'],
      },
      primary: sizes.map(whole),
      listened: whole(100_000),
    },
  ]);
});

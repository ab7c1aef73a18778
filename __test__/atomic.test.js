'use strict';

const { run } = require('./helpers');

const error = (code, name = 'ShmError') => expect.objectContaining({ code, name, returnedPromise: true });

describe.each(['primary', 'worker'])('the atomic API in the %s', (side) => {
  let r;
  beforeAll(async () => {
    const { messages } = await run('atomic.js');
    r = messages[0][side];
  });

  test('setIfAbsent stores only when missing, with an optional ttl', () => {
    expect(r.setIfAbsent).toEqual([true, false, { v: 1 }]);
    expect(r.setIfAbsentTtl).toEqual([true, true]);
  });

  test('getAndSet and getAndDelete return the previous value', () => {
    expect(r.getAndSet).toEqual(['<undefined>', 'first', 'second']);
    expect(r.getAndDelete).toEqual(['second', '<undefined>', false]);
  });

  test('compareAndSet compares the stored encoding and keeps the ttl', () => {
    expect(r.compareAndSet).toEqual([false, false, true, 'yes', true, true, false, 'created']);
  });

  test('update writes fn(current), deletes on undefined, and reports conflicts and errors', () => {
    expect(r.update).toEqual([{ n: 1 }, { n: 2 }, '<undefined>', false]);
    expect(r.conflict).toEqual(error('ERR_SHM_CONFLICT'));
    expect(r.conflictCalls).toBe(4);
    expect(r.updateFnError).toMatchObject({ message: 'fn failed', returnedPromise: true });
    expect(r.updateBadFn).toEqual(error('ERR_INVALID_ARG_TYPE', 'TypeError'));
  });

  test('lock handles, timeouts and withLock', () => {
    expect(r.lockTimeout).toEqual(error('ERR_SHM_LOCK_TIMEOUT'));
    expect(r.tryOnly).toEqual(error('ERR_SHM_LOCK_TIMEOUT'));
    // extend and release work once; a released handle can do neither again.
    expect(r.lockHandle).toEqual(['number', `${side === 'primary' ? 'p' : 'w'}:lock`, true, true, false, false]);
    expect(r.lockBadTtl).toEqual(error('ERR_OUT_OF_RANGE', 'RangeError'));
    expect(r.lockUnknownOption).toEqual(error('ERR_SHM_UNKNOWN_OPTION', 'TypeError'));
    expect(r.withLockValue).toBe('held number');
    expect(r.relockable).toBe(true);
  });

  test('a waiting lock does not hold up the other calls of the same process', () => {
    expect(r.flowWhileWaiting).toEqual({ during: 20, got: true });
  });
});

test('rateLimit lets exactly the budget through across 4 workers, fixed and sliding', async () => {
  const { messages } = await run('ratelimit.js');
  const [r] = messages;
  expect(r.fixed).toBe(100);
  expect(r.sliding).toBe(100);
  expect(r.badPoints).toMatchObject({ code: 'ERR_OUT_OF_RANGE' });
  expect(r.missingDuration).toMatchObject({ code: 'ERR_INVALID_ARG_TYPE' });
  expect(r.unknownOption).toMatchObject({ code: 'ERR_SHM_UNKNOWN_OPTION' });
});

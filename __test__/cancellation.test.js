'use strict';

const { run } = require('./helpers');
const { BACKEND } = require('./backend');

test('an AbortSignal withdraws a waiting lock, withLock, getOrSet or subscribe; await using releases a lock', async () => {
  const { messages } = await run('cancellation.js');
  const [report] = messages;
  // Redis keeps no count of lock waiters: they poll.
  const noWaiters = BACKEND === 'redis' ? null : 0;
  expect(report).toEqual({
    lock: {
      aborted: { name: 'AbortError', code: 'ABORT_ERR', shmError: true, cause: 'AbortError: This operation was aborted' },
      preAborted: { name: 'AbortError', code: 'ABORT_ERR', shmError: true, cause: 'not now' },
      badSignal: { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', shmError: true },
    },
    waitersAfterLockAbort: noWaiters,
    freeAfterRelease: true,
    withLock: { aborted: { name: 'AbortError', code: 'ABORT_ERR', shmError: true, cause: 'AbortError: This operation was aborted' }, ran: false },
    getOrSet: { aborted: { name: 'AbortError', code: 'ABORT_ERR', shmError: true, cause: 'AbortError: This operation was aborted' }, ran: false },
    waitersAfterGetOrSetAbort: noWaiters,
    fetched: 'from the primary',
    subscribe: { received: ['one'], deliveredAfterAbort: 0, preAborted: { name: 'AbortError', code: 'ABORT_ERR', shmError: true, cause: 'AbortError: This operation was aborted' } },
    dispose: { released: true },
  });
});

// The primary's calls are in process: withdrawing its wait used to throw
// from the abort listener, an uncaught exception.
test('an AbortSignal withdraws a lock wait the primary itself made', async () => {
  const { messages } = await run('cancellation-primary.js');
  expect(messages).toEqual([{ aborted: { name: 'AbortError', code: 'ABORT_ERR' }, freeAfterRelease: true }]);
});

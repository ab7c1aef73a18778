'use strict';

const { run } = require('./helpers');

test('express-session on cluster-shm: logged in through one worker, recognised by another', async () => {
  const { messages } = await run('session-app.js');
  const [r] = messages;
  expect(r.anonymous.body).toMatchObject({ worker: 2, user: null, sessions: 0 });
  expect(r.login).toEqual({ worker: 1, user: 'ada' });
  expect(r.recognised.body).toEqual({ worker: 2, user: 'ada', views: 1, sessions: 1 });
  // The other worker sees the change the first one saved.
  expect(r.counted.body).toEqual({ worker: 1, user: 'ada', views: 2, sessions: 1 });
  expect(r.storedSessions).toBe(1);
  expect(r.logout).toEqual({ worker: 2, loggedOut: true });
  expect(r.afterLogout.body).toMatchObject({ user: null });
  expect(r.remaining).toBe(0);
});

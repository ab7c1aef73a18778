#!/usr/bin/env node
'use strict';

// Runs the jest suite against one shared store: `standalone` (a
// `cluster-shm serve` broker) or `redis` (a redis-server), started and
// stopped by the suite's global setup. Test files run one at a time, since
// they share the store. Extra arguments go to jest.
//
//   node scripts/test-backend.js redis [jest args...]

const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { which } = require('../__test__/helpers');

const [backend, ...jestArgs] = process.argv.slice(2);
if (!['embedded', 'standalone', 'redis'].includes(backend)) {
  console.error('usage: node scripts/test-backend.js embedded|standalone|redis [jest args...]');
  process.exit(2);
}
if (backend === 'redis' && !which('redis-server')) {
  // CI installs it (.ci/run); elsewhere the run says what it skipped.
  if (process.env.CI === 'true') {
    console.error('redis-server is not installed: the suite cannot run on the redis backend');
    process.exit(1);
  }
  console.warn('[skipped: the suite on the redis backend needs redis-server; .ci/run installs it]');
  process.exit(0);
}
const jest = path.join(__dirname, '..', 'node_modules', 'jest', 'bin', 'jest.js');
console.log(`\n== the jest suite on the ${backend} backend ==\n`);
const { status, signal } = spawnSync(process.execPath, [jest, '--runInBand', ...jestArgs], {
  env: { ...process.env, CLUSTER_SHM_TEST_BACKEND: backend },
  stdio: 'inherit',
});
process.exit(status ?? (signal ? 1 : 0));

'use strict';

/**
 * Which store the suite runs against, from CLUSTER_SHM_TEST_BACKEND:
 *
 * - `embedded` (default): each fixture's primary hosts its own broker.
 * - `standalone`: one `cluster-shm serve` for the whole run; every fixture
 *   process gets CLUSTER_SHM_SOCKET and CLUSTER_SHM_AUTH.
 * - `redis`: one `redis-server` for the whole run; every fixture process
 *   gets CLUSTER_SHM_URL.
 *
 * __test__/setup/global.js starts and stops the shared store;
 * __test__/setup/each.js empties it before every test file and test.
 */

const BACKENDS = ['embedded', 'standalone', 'redis'];
const BACKEND = process.env.CLUSTER_SHM_TEST_BACKEND || 'embedded';
if (!BACKENDS.includes(BACKEND)) throw new Error(`CLUSTER_SHM_TEST_BACKEND must be one of ${BACKENDS.join(', ')}, got ${BACKEND}`);

/** Where the global setup left the shared store, for the processes the tests start. */
function backendEnv() {
  if (BACKEND === 'standalone') return { CLUSTER_SHM_SOCKET: process.env.SHM_TEST_SOCKET, CLUSTER_SHM_AUTH: process.env.SHM_TEST_AUTH };
  if (BACKEND === 'redis') return { CLUSTER_SHM_URL: process.env.SHM_TEST_URL };
  return {};
}

/** `test` on the given backends; elsewhere a skipped test that says why. */
function testOn(backends, reason) {
  const runs = backends.includes(BACKEND);
  const wrapped = (name, fn, timeout) => (runs ? test(name, fn, timeout) : test.skip(`${name} [skipped on ${BACKEND}: ${reason}]`, fn));
  wrapped.each = (table) => (name, fn, timeout) =>
    runs ? test.each(table)(name, fn, timeout) : test.skip.each(table)(`${name} [skipped on ${BACKEND}: ${reason}]`, fn);
  return wrapped;
}

/** `describe` on the given backends; elsewhere its tests are skipped, saying why. */
function describeOn(backends, reason, name, fn) {
  if (backends.includes(BACKEND)) return describe(name, fn);
  return describe.skip(`${name} [skipped on ${BACKEND}: ${reason}]`, fn);
}

/**
 * Whether the suite runs on Linux. The release workflow runs it on macOS
 * too, which has no /proc and no memfd: the few tests that need them are
 * gated with onLinux, and helpers that read /proc have a way for elsewhere.
 */
const LINUX = process.platform === 'linux';

/**
 * On Linux, `gate` as it is (`test`, or what testOn returns); elsewhere a
 * skipped test that says which Linux-only facility it `needs`.
 */
function onLinux(needs, gate = test) {
  if (LINUX) return gate;
  const why = `[skipped on ${process.platform}: needs ${needs}]`;
  const skipped = (name, fn) => test.skip(`${name} ${why}`, fn);
  skipped.each = (table) => (name, fn) => test.skip.each(table)(`${name} ${why}`, fn);
  return skipped;
}

/** The role a fixture's cluster primary has: it hosts the broker only on the embedded backend. */
const PRIMARY_ROLE = BACKEND === 'embedded' ? 'primary' : 'client';

module.exports = { BACKEND, BACKENDS, backendEnv, testOn, describeOn, LINUX, onLinux, PRIMARY_ROLE };

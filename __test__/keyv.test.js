'use strict';

// The Keyv adapter (cluster-shm/keyv) under Keyv's own conformance suite,
// @keyv/test-suite, plus what is particular to this adapter; then two
// workers of a real cluster sharing one Keyv store through it.
//
// @keyv/test-suite is written for vitest: each suite takes the vitest module
// and calls `test.it(name, (t) => ...)`, `test.beforeEach` and
// `test.afterEach`, and asserts with `t.expect` (the test context's expect).
// Its CommonJS build needs no vitest at run time, so jest runs it given
// jest's own functions in that shape.
//
// The adapter here is used as a cluster worker uses it: this process is a
// client of a broker in another process (fixtures/hold.js), over its socket.

const { Keyv } = require('keyv');
const { keyvApiTests, keyvValueTests, keyvNamespaceTest, keyvIteratorTests } = require('@keyv/test-suite');
const KeyvClusterShm = require('../keyv');
const { run, startHolder, stopHolder } = require('./helpers');
const { BACKEND, backendEnv } = require('./backend');

/** jest's functions in the shape of the vitest module the suite expects. */
const withContext = (fn) => () => fn({ expect });
const vitestShape = {
  describe,
  expect,
  it: (name, fn, timeout) => test(name, withContext(fn), timeout),
  test: (name, fn, timeout) => test(name, withContext(fn), timeout),
  beforeEach: (fn, timeout) => beforeEach(withContext(fn), timeout),
  afterEach: (fn, timeout) => afterEach(withContext(fn), timeout),
  beforeAll: (fn, timeout) => beforeAll(withContext(fn), timeout),
  afterAll: (fn, timeout) => afterAll(withContext(fn), timeout),
};

let holder;
let shm;

beforeAll(async () => {
  if (BACKEND === 'embedded') {
    const { proc, socket, secret } = await startHolder();
    holder = proc;
    Object.assign(process.env, { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: secret });
  } else {
    Object.assign(process.env, backendEnv());
  }
  shm = require('..');
  expect(shm.role).toBe('client');
});

afterAll(async () => {
  if (shm) await shm.close();
  if (holder) await stopHolder(holder);
});

const store = () => new KeyvClusterShm({ shm });

describe('@keyv/test-suite', () => {
  describe('keyvApiTests', () => keyvApiTests(vitestShape, Keyv, store));
  describe('keyvValueTests', () => keyvValueTests(vitestShape, Keyv, store));
  describe('keyvNamespaceTest', () => keyvNamespaceTest(vitestShape, Keyv, store));
  describe('keyvIteratorTests', () => keyvIteratorTests(vitestShape, Keyv, store));
});

describe('the adapter', () => {
  beforeEach(() => shm.clear());

  test('keys are `keyv:namespace:key` in the broker (the adapter\'s own namespace), values what Keyv serialized, the ttl the broker\'s', async () => {
    const keyv = new Keyv({ store: store(), namespace: 'users' });
    await keyv.set('ada', { name: 'Ada' }, 60_000);
    expect(await shm.keys('*')).toEqual(['keyv:users:ada']);
    const stored = await shm.get('keyv:users:ada');
    expect(typeof stored).toBe('string');
    expect(JSON.parse(stored).value).toEqual({ name: 'Ada' });
    const ttl = await shm.ttl('keyv:users:ada');
    expect(ttl).toBeGreaterThan(59_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    await keyv.set('forever', 1);
    expect(await shm.ttl('keyv:users:forever')).toBe(Infinity);
  });

  test('an expired entry is gone from the broker itself, not only hidden by Keyv', async () => {
    const keyv = new Keyv({ store: store(), namespace: 'n' });
    await keyv.set('brief', 'x', 50);
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(await shm.has('keyv:n:brief')).toBe(false);
    expect(await keyv.get('brief')).toBeUndefined();
  });

  test('clear() deletes only its namespace: other namespaces and keys of other users of the store stay', async () => {
    await shm.set('sess:abc', { user: 'ada' });
    await shm.set('counter', 3);
    const cache = new Keyv({ store: store(), namespace: 'cache' });
    const other = new Keyv({ store: store(), namespace: 'cache2' });
    await cache.set('a', 1);
    await cache.set('b', 2);
    await other.set('a', 3);
    await cache.clear();
    expect(await cache.get('a')).toBeUndefined();
    expect(await other.get('a')).toBe(3);
    expect((await shm.keys('*')).sort()).toEqual(['counter', 'keyv:cache2:a', 'sess:abc']);
  });

  test('a namespace or prefix with glob characters is matched literally by clear() and the iterator', async () => {
    const starred = new Keyv({ store: new KeyvClusterShm({ shm, prefix: 'p[1]*' }), namespace: 'n?' });
    const plain = new Keyv({ store: new KeyvClusterShm({ shm, prefix: 'p1x' }), namespace: 'nx' });
    await starred.set('k', 'starred');
    await plain.set('k', 'plain');
    const seen = [];
    for await (const entry of starred.iterator()) seen.push(entry);
    expect(seen).toEqual([['k', 'starred']]);
    await starred.clear();
    expect(await shm.keys('*')).toEqual(['p1xnx:k']);
    expect(await plain.get('k')).toBe('plain');
  });

  test('prefix: keys are prefixed in the broker; get, iterator and clear keep to the prefix', async () => {
    await shm.set('keyv:outside', 'not ours');
    const keyv = new Keyv({ store: new KeyvClusterShm({ shm, prefix: 'app1:' }) });
    await keyv.set('x', 1);
    await keyv.set('y', 2);
    expect((await shm.keys('app1:*')).sort()).toEqual(['app1:keyv:x', 'app1:keyv:y']);
    expect(await keyv.get(['x', 'y', 'z'])).toEqual([1, 2, undefined]);
    const entries = [];
    for await (const entry of keyv.iterator()) entries.push(entry);
    expect(entries.sort()).toEqual([['x', 1], ['y', 2]]);
    await keyv.clear();
    expect(await shm.keys('*')).toEqual(['keyv:outside']);
  });

  test('without a Keyv namespace, clear() empties the adapter\'s namespace and nothing else', async () => {
    await shm.set('unrelated', 1);
    const keyv = new Keyv({ store: store(), namespace: '' });
    await keyv.set('k', 1);
    expect((await shm.keys('*')).sort()).toEqual(['keyv:k', 'unrelated']);
    await keyv.clear();
    expect(await shm.keys('*')).toEqual(['unrelated']);
  });

  test("with prefix: '' and no Keyv namespace, clear() empties the whole store (documented)", async () => {
    await shm.set('unrelated', 1);
    const keyv = new Keyv({ store: new KeyvClusterShm({ shm, prefix: '' }), namespace: '' });
    await keyv.set('k', 1);
    expect((await shm.keys('*')).sort()).toEqual(['k', 'unrelated']);
    await keyv.clear();
    expect(await shm.size()).toBe(0);
  });

  test('setMany, getMany, hasMany and deleteMany go to the broker with their ttls', async () => {
    const keyv = new Keyv({ store: store(), namespace: 'm' });
    expect(await keyv.setMany([{ key: 'a', value: 1 }, { key: 'b', value: 'two', ttl: 30_000 }])).toEqual([true, true]);
    expect(await shm.ttl('keyv:m:a')).toBe(Infinity);
    expect(await shm.ttl('keyv:m:b')).toBeGreaterThan(29_000);
    expect(await keyv.get(['a', 'b', 'c'])).toEqual([1, 'two', undefined]);
    expect(await keyv.has(['a', 'c'])).toEqual([true, false]);
    expect(await keyv.delete(['a', 'b'])).toBe(true);
    expect(await keyv.delete(['a', 'b'])).toBe(false);
    expect(await shm.size()).toBe(0);
  });

  test('a failed write reaches Keyv\'s error event with cluster-shm\'s code, and set() resolves false', async () => {
    const maxValueBytes = shm.options.maxValueBytes;
    shm.configure({ maxValueBytes: 1024 });
    try {
      const keyv = new Keyv({ store: store(), namespace: 'e' });
      const errors = [];
      keyv.on('error', (error) => errors.push(error));
      expect(await keyv.set('big', 'x'.repeat(4096))).toBe(false);
      expect(errors.map((e) => e.code)).toEqual(['ERR_SHM_VALUE_TOO_LARGE']);
      expect(await shm.has('keyv:e:big')).toBe(false);
    } finally {
      shm.configure({ maxValueBytes });
    }
  });

  test('the options are checked', () => {
    expect(() => new KeyvClusterShm({ prefix: 5 })).toThrow(TypeError);
    expect(() => new KeyvClusterShm(null)).toThrow(TypeError);
    expect(new KeyvClusterShm({ shm }).prefix).toBe('keyv:');
  });
});

test('two workers of a real cluster share one Keyv store through the adapter', async () => {
  const { messages } = await run('keyv-app.js');
  const [r] = messages;
  expect(r.workers).toHaveLength(2);
  expect(new Set(r.workers).size).toBe(2);
  // Written by worker 1, read by worker 2 and by the primary.
  expect(r.readByOther).toEqual({ worker: 2, result: { text: 'hello', by: 1 } });
  expect(r.readByPrimary).toEqual({ text: 'hello', by: 1 });
  // A ttl set through one worker expires for the other.
  expect(r.shortBeforeExpiry).toEqual({ worker: 1, result: 'soon gone' });
  expect(r.shortTtl).toBeGreaterThan(0);
  expect(r.shortTtl).toBeLessThanOrEqual(1500);
  expect(r.shortAfterExpiry).toEqual({ worker: 1, result: null });
  // Keyv operations on many keys, mixed across workers.
  expect(r.getMany).toEqual({ worker: 1, result: ['a', 'b', null] });
  expect(r.iterated.worker).toBe(1);
  expect(r.iterated.result.sort()).toEqual([['greeting', { text: 'hello', by: 1 }], ['m1', 'a'], ['m2', 'b']]);
  // Worker 2 clears the namespace; worker 1 sees it empty, and nothing else went.
  expect(r.afterClear).toEqual({ worker: 1, result: [null, null] });
  expect(r.otherNamespace).toEqual({ worker: 2, result: 'kept' });
  expect(r.unrelated).toBe('kept too');
  expect(r.keysLeft.sort()).toEqual(['keyv:other:k', 'unrelated']);
});

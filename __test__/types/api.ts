// Type test of the public API: `tsc -p __test__/types` must accept every use
// below, and reject each line marked @ts-expect-error (tsc fails if such a
// line compiles).
import shm = require('../..');
import { Manager, User } from '../../compat';
import KeyvClusterShm = require('../../keyv');
import { Keyv, KeyvStoreAdapter } from 'keyv';

interface Profile {
  name: string;
  visits: number;
}

async function everyCall(): Promise<void> {
  const role: 'primary' | 'worker' | 'client' = shm.role;
  const socket: string | undefined = shm.socket;
  const options = shm.configure({ serialization: 'advanced', connectTimeout: 1000, commandTimeout: 2000, maxValueBytes: 1 << 20, maxKeyBytes: 1024 }).options;
  const serialization: 'json' | 'advanced' = options.serialization;
  shm.configure({ maxMemory: 1 << 30, maxKeys: 1000, evictionPolicy: 'allkeys-lru', persist: '/tmp/snapshot' });

  await shm.set('profile', { name: 'a', visits: 1 }, { ttl: 1000 });
  const profile: Profile | undefined = await shm.get<Profile>('profile');
  const exists: boolean = await shm.has('profile');
  const deleted: boolean = await shm.delete('profile');
  const keys: string[] = await shm.keys('p*');
  const size: number = await shm.size();
  await shm.clear();
  const many: Array<number | undefined> = await shm.mget<number>(['a', 'b']);
  await shm.mset({ a: 1 });
  await shm.mset(new Map([['a', 1]]));
  await shm.mset([['a', 1], ['b', 'two']]);
  const counter: number = await shm.incr('n', 2);
  const down: number = await shm.decr('n');
  const stored: boolean = await shm.setIfAbsent('once', 1, { ttl: 5 });
  const previous: string | undefined = await shm.getAndSet<string>('s', 'x');
  const removed: number | undefined = await shm.getAndDelete<number>('n');
  const swapped: boolean = await shm.compareAndSet('s', 'x', 'y', { ttl: 10 });
  const updated: Profile | undefined = await shm.update<Profile>('profile', (p) => (p ? { ...p, visits: p.visits + 1 } : { name: 'new', visits: 1 }), { retries: 3 });
  const fetched: Profile = await shm.getOrSet<Profile>('profile', async () => ({ name: 'f', visits: 0 }), { ttl: 100, timeout: 50 });
  const lock = await shm.lock('l', { ttl: 100, timeout: 10 });
  const fence: number = lock.fence;
  const extended: boolean = await lock.extend(50);
  const released: boolean = await lock.release();
  const result: string = await shm.withLock('l', async (held) => `fence ${held.fence}`);
  const ttlSet: boolean = await shm.expire('s', 100);
  const left: number | undefined = await shm.ttl('s');
  const persisted: boolean = await shm.persist('s');
  const receivers: number = await shm.publish('ch', { any: 'value' });
  const unsubscribe = await shm.subscribe<{ any: string }>('ch', (message, channel) => message.any + channel, {
    pattern: false,
    onMissed: ({ reason }) => reason,
  });
  await unsubscribe();
  const unwatch = await shm.watch('user:*', ({ key, event }) => key + event);
  await unwatch();
  const limit = await shm.rateLimit('api:1', { points: 10, duration: 1000, sliding: true });
  const allowed: boolean = limit.allowed;
  void [allowed, limit.remaining, limit.resetMs];
  const stats = await shm.stats();
  const figures: number[] = [stats.keys, stats.usedMemory, stats.evictedKeys, stats.residentMemory, stats.fragmentationRatio];
  const brokerFigures: Array<number | null> = [stats.locksHeld, stats.outputBufferBytes, stats.lockWaiters, stats.maxKeys];
  const raw: unknown = await shm.command('INFO', 'memory', 1, Buffer.from('x'));
  const code: 'ERR_SHM_TIMEOUT' = shm.codes.TIMEOUT;
  await shm.close();
  await shm.default.get('also-default-export');

  new Manager();
  const user = new User();
  user.set('k', 1, () => undefined);
  user.get('k', (value) => value);
  user.on('error', (error) => error.code);

  void [role, socket, serialization, profile, exists, deleted, keys, size, many, counter, down, stored, previous, removed];
  void [swapped, updated, fetched, fence, extended, released, result, ttlSet, left, persisted, receivers, figures, brokerFigures, raw, code];
}

async function mustNotCompile(): Promise<void> {
  // @ts-expect-error keys are strings
  await shm.get(42);
  // @ts-expect-error unknown option
  await shm.set('k', 1, { tll: 5 });
  // @ts-expect-error the ttl is a number of milliseconds
  await shm.set('k', 1, { ttl: '5s' });
  // @ts-expect-error not a serialization mode
  shm.configure({ serialization: 'xml' });
  // @ts-expect-error get<T> resolves to T | undefined, not T
  const sure: number = await shm.get<number>('n');
  // @ts-expect-error a lock handle has no unlock()
  (await shm.lock('l')).unlock();
  // @ts-expect-error points and duration are required
  await shm.rateLimit('k', { points: 5 });
  // @ts-expect-error listeners receive the typed message
  await shm.subscribe<{ a: number }>('ch', (message) => message.b);
  void sure;
}

// The Keyv adapter is a Keyv storage adapter by Keyv's own type.
async function keyvAdapter(): Promise<void> {
  const store: KeyvStoreAdapter = new KeyvClusterShm({ shm, prefix: 'cache:' });
  const keyv = new Keyv<{ n: number }>({ store, namespace: 'users' });
  await keyv.set('a', { n: 1 }, 1000);
  const value: { n: number } | undefined = await keyv.get('a');
  void value;
  // @ts-expect-error the prefix is a string
  new KeyvClusterShm({ prefix: 1 });
}

void everyCall;
void mustNotCompile;
void keyvAdapter;

// Other stores: a standalone broker, Redis, a Redis Cluster.
async function otherStores(): Promise<void> {
  const viaSocket: shm.SharedMemory = shm.connect({ socket: '/tmp/broker.sock', auth: 'secret' });
  const viaRedis = shm.connect({ url: 'redis://127.0.0.1:6379/0' }, { lockLease: 5000, commandTimeout: 2000 });
  const viaCluster = shm.connect({ cluster: [{ host: '127.0.0.1', port: 7000 }], redisOptions: { password: 'p' } });
  const held: number | null = (await viaRedis.stats()).locksHeld;
  const code: 'ERR_SHM_CROSSSLOT' = viaCluster.codes.CROSSSLOT;
  void viaSocket;
  void held;
  void code;
  // @ts-expect-error one target kind at a time
  shm.connect({ url: 'redis://x', socket: '/tmp/s' });
  // @ts-expect-error the lease is a number of milliseconds
  shm.connect({ url: 'redis://x' }, { lockLease: '5s' });
}

void otherStores;

import prometheus = require('../../prometheus');
import { Registry } from 'prom-client';

function metrics(): void {
  const registry = new Registry();
  const registered = prometheus.register(shm, { registry, prefix: 'app_shm_' });
  registered.keys.set(1);
  // @ts-expect-error the handle comes first
  prometheus.register({ registry });
}
void metrics;

import session = require('express-session');
import clusterShmSession = require('../../session');

async function moduleShape(): Promise<void> {
  // Destructured methods are bound to the handle.
  const { incr, get } = shm;
  const n: number = await incr('n');
  const v: number | undefined = await get<number>('n');
  // Any handle serves the session store, one from connect() included.
  const Store = clusterShmSession(session);
  new Store({ client: shm.connect({ socket: '/tmp/broker.sock' }) });
  new Store({ client: shm });
  try {
    await shm.get('k');
  } catch (error) {
    if (error instanceof shm.ShmError) {
      const code: string = error.code;
      void code;
    }
  }
  void [n, v];
}
void moduleShape;

function events(): void {
  shm.on('error', (error) => {
    const code: string = error.code;
    void code;
  });
  shm.once('reconnect', () => {});
  // @ts-expect-error 'reconnect' passes no arguments
  shm.on('reconnect', (n: number) => n);
}
void events;

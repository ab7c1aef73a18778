// Type test of the ESM entry point: named imports, as `tsc -p
// __test__/types/tsconfig.esm.json` checks them with Node's own resolution.
import shm, { get, set, incr, delete as remove, connect, ShmError, codes } from 'cluster-shm';
import type { Options, Stats } from 'cluster-shm';

async function named(): Promise<void> {
  await set('k', { a: 1 }, { ttl: 1000 });
  const value: { a: number } | undefined = await get<{ a: number }>('k');
  const n: number = await incr('n');
  const existed: boolean = await remove('k');
  const other = connect({ socket: '/tmp/x.sock' });
  await other.close();
  const options: Options = { serialization: 'json' };
  const stats: Stats = await shm.stats();
  try {
    await get('k');
  } catch (error) {
    if (error instanceof ShmError) {
      const code: string = error.code;
      void code;
    }
  }
  const closed: 'ERR_SHM_CLOSED' = codes.CLOSED;
  // @ts-expect-error keys are strings
  await get(5);
  void [value, n, existed, options, stats, closed];
}
void named;

async function cancellation(): Promise<void> {
  const controller = new AbortController();
  await using lock = await shm.lock('x', { signal: controller.signal, timeout: 1000 });
  const fence: number = lock.fence;
  await shm.withLock('y', async () => fence, { signal: AbortSignal.timeout(100) });
  await shm.getOrSet('k', async () => 1, { signal: controller.signal });
  const off = await shm.subscribe('c', () => {}, { signal: controller.signal });
  await off();
  // @ts-expect-error a signal is an AbortSignal
  await shm.lock('x', { signal: 'now' });
}
void cancellation;

// Types of the ESM entry point (index.mjs): the handle as the default export,
// its methods as named exports.
import shm from './index.js';

export default shm;

type Handle = typeof shm;
export declare const configure: Handle['configure'];
export declare const get: Handle['get'];
export declare const set: Handle['set'];
export declare const has: Handle['has'];
declare const remove: Handle['delete'];
export { remove as delete };
export declare const keys: Handle['keys'];
export declare const scan: Handle['scan'];
export declare const size: Handle['size'];
export declare const clear: Handle['clear'];
export declare const mget: Handle['mget'];
export declare const mset: Handle['mset'];
export declare const incr: Handle['incr'];
export declare const decr: Handle['decr'];
export declare const setIfAbsent: Handle['setIfAbsent'];
export declare const getAndSet: Handle['getAndSet'];
export declare const getAndDelete: Handle['getAndDelete'];
export declare const compareAndSet: Handle['compareAndSet'];
export declare const update: Handle['update'];
export declare const getOrSet: Handle['getOrSet'];
export declare const lock: Handle['lock'];
export declare const withLock: Handle['withLock'];
export declare const rateLimit: Handle['rateLimit'];
export declare const expire: Handle['expire'];
export declare const ttl: Handle['ttl'];
export declare const persist: Handle['persist'];
export declare const stats: Handle['stats'];
export declare const command: Handle['command'];
export declare const publish: Handle['publish'];
export declare const subscribe: Handle['subscribe'];
export declare const watch: Handle['watch'];
export declare const close: Handle['close'];
export declare const namespace: Handle['namespace'];
export declare const connect: Handle['connect'];
export declare const ShmError: Handle['ShmError'];
export declare const codes: Handle['codes'];
export type { SharedMemory, Options, Value, Lock, Stats, Codes, ConnectTarget } from './index.js';

// The ESM entry point: the same handle as require('cluster-shm') (one broker
// per process, whichever way it is loaded), as the default export and as
// named exports of its methods, which are bound to it.
import shm from './index.js';

export default shm;
export const {
  configure,
  get,
  set,
  has,
  keys,
  scan,
  size,
  clear,
  mget,
  mset,
  incr,
  decr,
  setIfAbsent,
  getAndSet,
  getAndDelete,
  compareAndSet,
  update,
  getOrSet,
  lock,
  withLock,
  rateLimit,
  expire,
  ttl,
  persist,
  stats,
  command,
  publish,
  subscribe,
  watch,
  close,
  namespace,
  connect,
  ShmError,
  codes,
} = shm;
const remove = shm.delete;
export { remove as delete };

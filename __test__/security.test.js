'use strict';

// What keeps another local user out (docs/security.md): the default socket
// directory of `cluster-shm serve`, and the check every client makes before
// it connects and sends the secret. The other user is `nobody`.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start, run, serve } = require('./helpers');
const { describeOn } = require('./backend');

const NOBODY = 65534;
const SECRET = 'the-secret-of-the-broker';
const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const testAsRoot = asRoot ? test : (name, fn) => test.skip(`${name} [needs root to act as a second user]`, fn);
testAsRoot.each = asRoot ? test.each : (table) => (name, fn) => test.skip.each(table)(`${name} [needs root to act as a second user]`, fn);

describeOn(['embedded'], 'it starts brokers and listeners of its own', 'another local user', () => {
  let base;
  beforeEach(() => {
    // A shared temporary directory, as /tmp: anyone may add entries, only
    // their owner may remove them.
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-security-'));
    fs.chmodSync(base, 0o1777);
  });
  afterEach(() => fs.rmSync(base, { recursive: true, force: true }));

  /** A directory under `base` made by root with `mode`, handed to `owner`. */
  function directory(name, mode, owner = 0) {
    const dir = path.join(base, name);
    fs.mkdirSync(dir);
    fs.chmodSync(dir, mode);
    fs.chownSync(dir, owner, owner);
    return dir;
  }

  /** A listener of nobody's posing as a broker in `dir`. */
  async function fakeBroker(dir) {
    const socket = path.join(dir, 'broker.sock');
    const proc = start('fake-broker.js', [socket], { uid: NOBODY, gid: NOBODY });
    await proc.waitFor((m) => m.listening);
    return { proc, socket, contacts: () => proc.messages.filter((m) => !m.listening) };
  }

  /** What each kind of client connection did when given `socket` and the secret. */
  async function clientsOf(socket) {
    const env = { CLUSTER_SHM_SOCKET: socket, CLUSTER_SHM_AUTH: SECRET, CLUSTER_SHM_OPTIONS: '{"connectTimeout":1000,"commandTimeout":1000}' };
    const { messages } = await run('untrusted-socket.js', [], { env });
    return messages[0].results;
  }

  const refusedEverywhere = (why) => {
    const refused = { code: 'ERR_SHM_UNSAFE_SOCKET', message: expect.stringMatching(why) };
    return { get: refused, subscribe: refused, lockWait: refused };
  };

  testAsRoot.each([
    ['a symlink another user planted', (dir) => {
      // It points at a private directory of root's: following it, the
      // broker would listen there until the link is swapped for one to
      // a directory of that user's.
      const target = directory('roots-own', 0o700);
      fs.symlinkSync(target, dir);
      fs.lchownSync(dir, NOBODY, NOBODY);
      return target;
    }, /cluster-shm-0 is a symbolic link \(another user may have planted it\); remove it or pass --socket/],
    ['a directory another user created', (dir) => {
      fs.mkdirSync(dir, { mode: 0o700 });
      fs.chownSync(dir, NOBODY, NOBODY);
      return dir;
    }, /cluster-shm-0 belongs to uid 65534, not to you \(uid 0\); remove it or pass --socket/],
  ])('cluster-shm serve refuses %s at its default socket directory, and listens nowhere', async (_, plant, why) => {
    const planted = plant(path.join(base, 'cluster-shm-0'));
    const broker = serve([], { env: { TMPDIR: base } });
    const listened = await broker.listening.then(() => true, () => false);
    if (listened) broker.child.kill('SIGTERM');
    const { code, stderr } = await broker.exited;
    expect({ listened, code }).toEqual({ listened: false, code: 1 });
    expect(stderr).toMatch(why);
    expect(fs.readdirSync(planted)).toEqual([]);
  });

  testAsRoot('a client sends nothing to a socket in another user\'s directory, also when a symlink leads there', async () => {
    const theirs = directory('theirs', 0o700, NOBODY);
    const fake = await fakeBroker(theirs);
    try {
      // Where the default socket directory's symlink led once it was swapped.
      const link = path.join(base, 'cluster-shm-0');
      fs.symlinkSync(theirs, link);
      const why = new RegExp(`its directory ${theirs} belongs to uid 65534, neither this process's user \\(uid 0\\) nor root`);
      expect(await clientsOf(fake.socket)).toEqual(refusedEverywhere(why));
      expect(await clientsOf(path.join(link, 'broker.sock'))).toEqual(refusedEverywhere(why));
      expect(fake.contacts()).toEqual([]);
    } finally {
      fake.proc.child.kill('SIGTERM');
      await fake.proc.done;
    }
  });

  testAsRoot('a client sends nothing to a socket in a directory other users may write', async () => {
    const shared = directory('shared', 0o777);
    const fake = await fakeBroker(shared);
    try {
      expect(await clientsOf(fake.socket)).toEqual(refusedEverywhere(new RegExp(`its directory ${shared} is writable by other users \\(mode 777\\)`)));
      expect(fake.contacts()).toEqual([]);
    } finally {
      fake.proc.child.kill('SIGTERM');
      await fake.proc.done;
    }
  });
});

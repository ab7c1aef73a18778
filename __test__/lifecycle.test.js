'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start, run, serve } = require('./helpers');
const { describeOn, LINUX } = require('./backend');

/** Starts a broker-holding primary and returns it with its socket and directory. */
async function holder(args = []) {
  const proc = start('hold.js', args);
  const { socket } = await proc.waitFor((m) => m.socket);
  return { proc, socket, dir: path.dirname(socket) };
}

describeOn(['embedded'], 'it checks the socket of the broker a primary hosts', 'the broker socket', () => {
  test('lives in a fresh 0700 directory, is 0600, and belongs to the primary', async () => {
    const { proc, socket, dir } = await holder();
    try {
      expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
      expect(fs.statSync(socket).isSocket()).toBe(true);
      expect(fs.statSync(socket).mode & 0o777).toBe(0o600);
      expect(path.basename(dir)).toMatch(new RegExp(`^cluster-shm-${proc.child.pid}-`));
    } finally {
      proc.child.kill('SIGTERM');
      await proc.done;
    }
  });

  test('is removed with its directory when the primary exits normally', async () => {
    const { proc, socket, dir } = await holder(['exit-after', '100']);
    const { code } = await proc.done;
    expect(code).toBe(0);
    expect(fs.existsSync(socket)).toBe(false);
    expect(fs.existsSync(dir)).toBe(false);
  });

  test.each(['SIGTERM', 'SIGINT', 'SIGHUP'])('is removed when the primary is ended by %s, which still ends it', async (signal) => {
    const { proc, socket, dir } = await holder();
    proc.child.kill(signal);
    const result = await proc.done;
    expect(result.signal).toBe(signal);
    expect(fs.existsSync(socket)).toBe(false);
    expect(fs.existsSync(dir)).toBe(false);
  });

  test('a directory left by a primary killed with SIGKILL is removed by the next primary', async () => {
    const first = await holder();
    first.proc.child.kill('SIGKILL');
    await first.proc.done;
    expect(fs.existsSync(first.dir)).toBe(true);
    const second = await holder();
    try {
      expect(fs.existsSync(first.dir)).toBe(false);
    } finally {
      second.proc.child.kill('SIGTERM');
      await second.proc.done;
    }
  });

  test('a live broker in a directory whose pid this primary cannot see (another PID namespace) is left alone', async () => {
    // Above the largest pid Linux (or macOS) hands out: no such process here,
    // as for a primary in another container sharing the temp directory.
    // (Asked with kill(pid, 0), not /proc, which macOS has not.)
    const unseenPid = 4_194_305;
    const lookup = () => {
      try {
        process.kill(unseenPid, 0);
        return 'found';
      } catch (error) {
        return error.code;
      }
    };
    expect(lookup()).toBe('ESRCH');
    // Under /tmp off Linux: below macOS's per-user $TMPDIR (/var/folders/…/T) the
    // sockets in these directories would pass the 104 bytes macOS allows a socket path.
    const base = fs.mkdtempSync(path.join(LINUX ? os.tmpdir() : '/tmp', 'shm-cleanup-'));
    const liveDir = path.join(base, `cluster-shm-${unseenPid}-0a1b2c3d4e5f`);
    const deadDir = path.join(base, `cluster-shm-${unseenPid + 1}-0a1b2c3d4e5f`);
    fs.mkdirSync(liveDir, { mode: 0o700 });
    fs.mkdirSync(deadDir, { mode: 0o700 });
    const live = serve(['--socket', path.join(liveDir, 'broker.sock')]);
    // A broker killed with SIGKILL leaves its socket, which then refuses connections.
    const dead = serve(['--socket', path.join(deadDir, 'broker.sock')]);
    try {
      await Promise.all([live.listening, dead.listening]);
      dead.child.kill('SIGKILL');
      await dead.exited;
      const primary = start('hold.js', [], { env: { TMPDIR: base } });
      const { socket } = await primary.waitFor((m) => m.socket);
      primary.child.kill('SIGTERM');
      await primary.done;
      expect(path.dirname(path.dirname(socket))).toBe(base);
      expect({ live: fs.existsSync(liveDir), dead: fs.existsSync(deadDir) }).toEqual({ live: true, dead: false });
      const { messages } = await run('client.js', ['set:still="reachable"'], { env: { CLUSTER_SHM_SOCKET: path.join(liveDir, 'broker.sock') } });
      expect(messages[1]).toMatchObject({ ok: true });
    } finally {
      live.child.kill('SIGTERM');
      await live.exited;
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});

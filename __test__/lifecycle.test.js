'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { start } = require('./helpers');
const { describeOn } = require('./backend');

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
});

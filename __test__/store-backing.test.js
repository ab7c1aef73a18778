'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { start } = require('./helpers');
const { describeOn, onLinux } = require('./backend');

/** A shared writable mapping of the whole store: `<start>-<end> rw-s 00000000 <dev> <inode> <path>`. */
const STORE_LINE = /^([0-9a-f]+)-([0-9a-f]+) rw-s 00000000 [0-9a-f]+:[0-9a-f]+ \d+ +(.+)$/;

function listing(dir) {
  return fs.readdirSync(dir).sort();
}

function gone(pid) {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return error.code === 'ESRCH';
  }
}

async function waitGone(pids) {
  const until = Date.now() + 10_000;
  while (!pids.every(gone)) {
    if (Date.now() > until) throw new Error(`still alive after SIGKILL: ${pids.filter((pid) => !gone(pid)).join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Runs fixtures/store-backing.js with `env`: its report, and a `kill()` that SIGKILLs the primary and its workers. */
async function cluster(env) {
  const proc = start('store-backing.js', [], { env, timeout: 60_000 });
  const report = await proc.waitFor((m) => m.verify !== undefined);
  const dir = path.dirname(report.socket);
  const pids = [report.pid, ...report.wrote.map((w) => w.pid)];
  return {
    proc,
    report,
    dir,
    async kill() {
      for (const pid of pids.slice(1)) process.kill(pid, 'SIGKILL');
      proc.child.kill('SIGKILL');
      await proc.done;
      await waitGone(pids);
    },
  };
}

/** The lines of a report's maps that map the whole store: every shared writable mapping as long as the primary's. */
function storeLines(maps, length) {
  return maps.filter((line) => {
    const m = STORE_LINE.exec(line);
    return m && BigInt(`0x${m[2]}`) - BigInt(`0x${m[1]}`) === length;
  });
}

describeOn(['embedded'], 'the broker its primary hosts makes the store, in the backing its environment asks for', 'the store backing', () => {
  // The fixture reads the mappings from /proc/self/maps and a child's descriptors from /proc/self/fd.
  onLinux('/proc/self/maps and /proc/self/fd')('CLUSTER_SHM_STORE_BACKING=file: workers map an unlinked file of the private directory, share writes, and a SIGKILL leaves only the socket', async () => {
    // A temp dir of this test's own: a broker that another test file starts
    // meanwhile would remove the killed broker's directory before it is listed.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-backing-'));
    const run = await cluster({ CLUSTER_SHM_STORE_BACKING: 'file', TMPDIR: tmp });
    const { report, dir } = run;
    let killed = false;
    expect(path.dirname(dir)).toBe(tmp);
    try {
      // The primary maps the store as one file of the private directory, already unlinked.
      const primaryLines = report.primaryMaps.filter((line) => line.includes(dir));
      expect({ primaryLines }).toEqual({ primaryLines: [expect.stringMatching(new RegExp(`^[0-9a-f]+-[0-9a-f]+ rw-s 00000000 \\S+ \\d+ +${dir}/store-[0-9a-f]{16} \\(deleted\\)$`))] });
      const [, from, to, file] = STORE_LINE.exec(primaryLines[0]);
      const length = BigInt(`0x${to}`) - BigInt(`0x${from}`);
      // Each worker maps that same file (same path, same inode), whole.
      for (const wrote of report.wrote) {
        expect({ writer: wrote.writer, socket: wrote.socket, lines: storeLines(wrote.maps, length) }).toEqual({
          writer: wrote.writer,
          socket: report.socket,
          lines: [expect.stringMatching(new RegExp(`^[0-9a-f]+-[0-9a-f]+ rw-s 00000000 \\S+ ${primaryLines[0].split(/ +/)[4]} +${file.replace(/[()]/g, '\\$&')}$`))],
        });
      }
      // A program a worker runs inherits neither the store nor the socket.
      for (const wrote of report.wrote) {
        expect({ writer: wrote.writer, inherited: wrote.childDescriptors.filter((link) => link && link.includes(dir)) }).toEqual({ writer: wrote.writer, inherited: [] });
      }
      // No name is left for the store while it runs.
      expect(listing(dir)).toEqual(['broker.sock']);
      // The workers see each other's writes.
      expect(report.wrote.map((w) => w.counted).sort()).toEqual([1, 2]);
      expect(report.read).toEqual([
        { writer: 1, counter: 2, otherIsBuffer: true, otherLength: 4096, otherEqual: true, otherHead: '020910171e252c33' },
        { writer: 2, counter: 2, otherIsBuffer: true, otherLength: 4096, otherEqual: true, otherHead: '01080f161d242b32' },
      ]);
      expect(report.verify).toBe('OK');

      await run.kill();
      killed = true;
      // Nothing but the socket stays behind a SIGKILL of every process.
      expect(listing(dir)).toEqual(['broker.sock']);
      // The next broker removes the directory.
      const next = start('hold.js', [], { env: { TMPDIR: tmp } });
      try {
        await next.waitFor((m) => m.socket);
        expect({ dir, exists: fs.existsSync(dir) }).toEqual({ dir, exists: false });
      } finally {
        next.child.kill('SIGTERM');
        await next.done;
      }
    } finally {
      if (!killed) await run.kill();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }, 60_000);

  // memfd is Linux's; the fixture sees it in /proc/self/maps and /proc/self/fd.
  onLinux('memfd, /proc/self/maps and /proc/self/fd')('any other value: workers map the memfd and the private directory holds only the socket', async () => {
    // Unset is the same; the runner's own value would be inherited.
    const run = await cluster({ CLUSTER_SHM_STORE_BACKING: 'memfd' });
    const { report, dir } = run;
    try {
      const primaryLines = report.primaryMaps.filter((line) => line.includes('memfd:cluster-shm'));
      expect({ primaryLines }).toEqual({ primaryLines: [expect.stringMatching(/^[0-9a-f]+-[0-9a-f]+ rw-s 00000000 \S+ \d+ +\/memfd:cluster-shm \(deleted\)$/)] });
      for (const wrote of report.wrote) {
        expect({ writer: wrote.writer, lines: wrote.maps.filter((line) => line.includes('memfd:cluster-shm')) }).toEqual({
          writer: wrote.writer,
          lines: [expect.stringMatching(/\/memfd:cluster-shm \(deleted\)$/)],
        });
      }
      for (const wrote of report.wrote) {
        expect({ writer: wrote.writer, inherited: wrote.childDescriptors.filter((link) => link && link.includes('cluster-shm')) }).toEqual({ writer: wrote.writer, inherited: [] });
      }
      expect(report.primaryMaps.filter((line) => line.includes(dir))).toEqual([]);
      expect(listing(dir)).toEqual(['broker.sock']);
      expect(report.read.map((r) => [r.counter, r.otherEqual])).toEqual([
        [2, true],
        [2, true],
      ]);
      expect(report.verify).toBe('OK');
    } finally {
      await run.kill();
    }
  }, 60_000);
});

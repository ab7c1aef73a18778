'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { run, start } = require('./helpers');
const { describeOn } = require('./backend');

describeOn(['embedded'], 'persist is an option of the broker a primary hosts; Redis persists by its own settings', 'snapshot persistence (persist: path)', () => {
  let dir;
  let file;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shm-persist-'));
    file = path.join(dir, 'store.snapshot');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('data written by the primary and its workers survives a normal restart, ttl included', async () => {
    const first = await run('persist.js', [file, 'exit']);
    expect(first.messages[0].found).toEqual({ counter: undefined, doc: undefined, blob: undefined, brief: undefined });
    expect(fs.existsSync(file)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = await run('persist.js', [file, 'exit']);
    const { loadError, found, ttlOfLong } = second.messages[0];
    expect(loadError).toBeNull();
    expect(found).toEqual({ counter: 1, doc: { saved: true, at: 0 }, blob: { type: 'Buffer', data: [1, 2, 3] }, brief: undefined });
    expect(ttlOfLong).toBeGreaterThan(590_000);
    // The snapshot holds what the worker wrote too.
    expect(fs.readFileSync(file).includes('from-worker')).toBe(true);
  });

  test.each(['SIGTERM', 'SIGINT'])('a primary stopped by %s writes its snapshot', async (signal) => {
    const proc = start('persist.js', [file, 'wait']);
    await proc.waitFor((m) => 'found' in m);
    proc.child.kill(signal);
    await proc.done;
    const again = await run('persist.js', [file, 'exit']);
    expect(again.messages[0].found.counter).toBe(1);
  });

  test('a damaged snapshot is refused with ERR_SHM_SNAPSHOT and nothing is loaded', async () => {
    fs.writeFileSync(file, 'CLUSTER-SHM-SNAPSHOT 1\n*3\r\n$7\r\ncounter\r\n$');
    const { messages } = await run('persist.js', [file, 'exit']);
    expect(messages[0].loadError).toMatchObject({ code: 'ERR_SHM_SNAPSHOT' });
    expect(messages[0].loadError.message).toMatch(/not a valid snapshot/);
    expect(messages[0].found.counter).toBeUndefined();
  });

  test('a damaged snapshot named in CLUSTER_SHM_OPTIONS: require() does not throw, calls reject with ERR_SHM_SNAPSHOT, the file is kept', async () => {
    const damaged = 'CLUSTER-SHM-SNAPSHOT 1\n*3\r\n$7\r\ncounter\r\n$';
    fs.writeFileSync(file, damaged);
    const result = await start('client.js', ['get:counter'], { env: { CLUSTER_SHM_OPTIONS: JSON.stringify({ persist: file }) } }).done;
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.messages[0].role).toBe('primary');
    expect(result.messages[1]).toMatchObject({ ok: false, error: { name: 'ShmError', code: 'ERR_SHM_SNAPSHOT' } });
    expect(result.messages[1].error.message).toMatch(/not a valid snapshot/);
    expect(fs.readFileSync(file, 'utf8')).toBe(damaged);
  });

  test.each([
    ['exits normally', 'stdin', (proc) => proc.child.stdin.write('exit\n')],
    ['is stopped by SIGTERM', 'wait', (proc) => proc.child.kill('SIGTERM')],
  ])('a primary whose final save fails when it %s exits with code 1 and says why', async (_, mode, stop) => {
    const proc = start('persist.js', [file, mode]);
    await proc.waitFor((m) => 'found' in m);
    fs.rmSync(dir, { recursive: true });
    stop(proc);
    const { code, signal, stderr } = await proc.done;
    expect({ code, signal }).toEqual({ code: 1, signal: null });
    expect(stderr).toContain(`cluster-shm: could not write the snapshot ${file}: No such file or directory`);
  });

  test('close() rejects with ERR_SHM_SNAPSHOT when its final save fails', async () => {
    const proc = start('persist.js', [file, 'stdin']);
    await proc.waitFor((m) => 'found' in m);
    fs.rmSync(dir, { recursive: true });
    proc.child.stdin.write('close\n');
    const { closeError } = await proc.waitFor((m) => 'closeError' in m);
    expect(closeError).toMatchObject({ name: 'ShmError', code: 'ERR_SHM_SNAPSHOT' });
    expect(closeError.message).toBe(`could not write the snapshot ${file}: No such file or directory (os error 2)`);
    await proc.done;
  });

  test('the snapshot is readable by its owner only, and a symlink planted at the temporary name it used to write is not followed', async () => {
    const victim = path.join(dir, 'victim');
    fs.writeFileSync(victim, 'not the snapshot');
    const proc = start('persist.js', [file, 'wait']);
    const { pid } = await proc.waitFor((m) => 'found' in m);
    // The name the temporary file had before it was random.
    fs.symlinkSync(victim, path.join(dir, `store.tmp-${pid}`));
    proc.child.kill('SIGTERM');
    await proc.done;
    expect(fs.readFileSync(victim, 'utf8')).toBe('not the snapshot');
    const snapshot = fs.lstatSync(file);
    expect(snapshot.isFile()).toBe(true);
    expect(snapshot.mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual(['store.snapshot', `store.tmp-${pid}`, 'victim']);
    const again = await run('persist.js', [file, 'exit']);
    expect(again.messages[0].found.counter).toBe(1);
  });
});

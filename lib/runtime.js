'use strict';

/**
 * Where a user's brokers can be found: a private per-user runtime directory
 * holding `cluster-shm serve`'s default socket and one connection file per
 * running broker (socket, secret, pid, name, command line, start time), so
 * that `cluster-shm ls` and the other commands find a running app.
 *
 * The directory is `$XDG_RUNTIME_DIR/cluster-shm` where the system provides
 * one, else `<tmp>/cluster-shm-<uid>`. Another user may have created that
 * path first in a shared /tmp: a symlink there is refused, not followed (it
 * could point at one of our directories now and at theirs later), and owner
 * and mode are read from the directory opened, not from the path.
 */

const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { shmError, CODES } = require('./errors');

const FILE_PREFIX = 'broker-';

function runtimeDir(env = process.env) {
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'cluster-shm');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 'user';
  return path.join(env.TMPDIR || os.tmpdir(), `cluster-shm-${uid}`);
}

/**
 * Creates `dir` (mode 0700) unless it exists, and checks, on the directory
 * opened without following a link, that it belongs to this user and that
 * nobody else may enter it. Throws ERR_SHM_UNSAFE_DIR saying why not.
 */
function privateDir(dir) {
  const refuse = (why) => {
    throw shmError(CODES.UNSAFE_DIR, `${dir} ${why}`, { path: dir });
  };
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if (error.code !== 'EEXIST') refuse(`cannot be created (${error.code || error.message})`);
  }
  if (typeof process.geteuid !== 'function') return dir;
  let fd;
  try {
    fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch (error) {
    // Linux says ENOTDIR for a symlink opened with O_DIRECTORY | O_NOFOLLOW, others ELOOP.
    if (error.code !== 'ELOOP' && error.code !== 'ENOTDIR') refuse(`cannot be opened (${error.code || error.message})`);
    refuse(fs.lstatSync(dir).isSymbolicLink() ? 'is a symbolic link (another user may have planted it)' : 'is not a directory');
  }
  const stat = fs.fstatSync(fd);
  fs.closeSync(fd);
  if (stat.uid !== process.geteuid()) refuse(`belongs to uid ${stat.uid}, not to you (uid ${process.geteuid()})`);
  if ((stat.mode & 0o077) !== 0) refuse(`must be private (mode 0700), not ${(stat.mode & 0o777).toString(8)}`);
  return dir;
}

/** The name a broker is listed under: CLUSTER_SHM_NAME, PM2's app name, or the main script's. */
function appName(env = process.env) {
  if (env.CLUSTER_SHM_NAME) return env.CLUSTER_SHM_NAME;
  if (env.pm_id !== undefined && env.name) return env.name;
  return process.argv[1] ? path.basename(process.argv[1]).replace(/\.[cm]?js$/, '') : 'node';
}

/**
 * Writes this process's connection file (0600, never through a link) and
 * returns a function that removes it. Returns null, having written nothing,
 * when the runtime directory is not safe to use: the broker works without
 * being listed.
 */
function announce({ socket, secret, name = appName() }) {
  let dir;
  try {
    dir = privateDir(runtimeDir());
  } catch (error) {
    process.emitWarning(`cluster-shm: this broker is not listed for \`cluster-shm ls\`: ${error.message}`, { code: error.code });
    return null;
  }
  const file = path.join(dir, `${FILE_PREFIX}${process.pid}.json`);
  const record = { pid: process.pid, name, socket, secret: secret || null, argv: process.argv, startedAt: new Date().toISOString() };
  try {
    // A file left by an earlier process with this pid (SIGKILLed, pid reused) is ours to replace.
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, JSON.stringify(record), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    process.emitWarning(`cluster-shm: could not write ${file}: ${error.code || error.message}`, { code: CODES.UNSAFE_DIR });
    return null;
  }
  return () => fs.rmSync(file, { force: true });
}

/** Whether something accepts connections on the socket. */
function listening(socket, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const connection = net.createConnection(socket);
    const done = (answer) => {
      clearTimeout(timer);
      connection.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done(true), timeoutMs); // a busy broker is still a live one
    connection.once('connect', () => done(true));
    connection.once('error', () => done(false));
  });
}

/**
 * The brokers of this user that are running, oldest first. A file whose
 * socket refuses connections was left by a broker that was killed: it is
 * removed.
 */
async function liveBrokers(env = process.env) {
  const dir = runtimeDir(env);
  let names;
  try {
    names = fs.readdirSync(dir);
  } catch (error) {
    if (error.code === 'ENOENT') return [];
    throw shmError(CODES.UNSAFE_DIR, `cannot read ${dir}: ${error.code || error.message}`, { path: dir });
  }
  privateDir(dir);
  const brokers = [];
  for (const name of names.filter((n) => n.startsWith(FILE_PREFIX) && n.endsWith('.json'))) {
    const file = path.join(dir, name);
    let record;
    try {
      const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        record = JSON.parse(fs.readFileSync(fd, 'utf8'));
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      continue; // not a connection file of ours (a link, or being written)
    }
    if (await listening(record.socket)) brokers.push({ ...record, file });
    else fs.rmSync(file, { force: true });
  }
  return brokers.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.pid - b.pid);
}

module.exports = { runtimeDir, privateDir, announce, liveBrokers, appName };

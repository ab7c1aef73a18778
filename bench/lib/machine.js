'use strict';

/** What the numbers were measured on. */

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { redisVersion } = require('./redis-server');

function cpuModel() {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) return match[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

function loadAverage() {
  return os.loadavg().map((v) => v.toFixed(2)).join(' / ');
}

const REPO = path.join(__dirname, '..', '..');
const ADDON = path.join(REPO, 'cluster-shm.linux-x64-gnu.node');

/** Every file under dir (recursively) whose name ends with one of `endings`. */
function sourceFiles(dir, endings) {
  const files = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...sourceFiles(file, endings));
    else if (endings.some((e) => entry.name.endsWith(e))) files.push(file);
  }
  return files;
}

/** Section names of a 64-bit little-endian ELF file (enough to spot DWARF debug info). */
function elfSectionNames(buffer) {
  if (buffer.length < 64 || buffer.readUInt32BE(0) !== 0x7f454c46 || buffer[4] !== 2 || buffer[5] !== 1) return null;
  const shoff = Number(buffer.readBigUInt64LE(0x28));
  const shentsize = buffer.readUInt16LE(0x3a);
  const shnum = buffer.readUInt16LE(0x3c);
  const shstrndx = buffer.readUInt16LE(0x3e);
  const header = (i) => shoff + i * shentsize;
  const strtab = Number(buffer.readBigUInt64LE(header(shstrndx) + 0x18));
  const names = [];
  for (let i = 0; i < shnum; i++) {
    const start = strtab + buffer.readUInt32LE(header(i));
    names.push(buffer.toString('latin1', start, buffer.indexOf(0, start)));
  }
  return names;
}

/**
 * What the numbers of cluster-shm depend on: the native addon. A debug build
 * (DWARF sections present; the release profile has none) or one older than
 * the Rust sources would make the numbers meaningless, so the report says so.
 */
function describeAddon() {
  let stat;
  try {
    stat = fs.statSync(ADDON);
  } catch {
    return { present: false };
  }
  const sections = elfSectionNames(fs.readFileSync(ADDON)) || [];
  const debugBuild = sections.includes('.debug_info');
  const newerSources = sourceFiles(path.join(REPO, 'src'), ['.rs'])
    .concat([path.join(REPO, 'Cargo.toml'), path.join(REPO, 'Cargo.lock')])
    .filter((file) => fs.existsSync(file) && fs.statSync(file).mtimeMs > stat.mtimeMs)
    .map((file) => path.relative(REPO, file));
  return { present: true, bytes: stat.size, builtAt: stat.mtime.toISOString(), debugBuild, newerSources };
}

function describeMachine() {
  return {
    cpu: cpuModel(),
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    redis: redisVersion(),
    clusterShm: require(path.join(__dirname, '..', '..', 'package.json')).version,
    date: new Date().toISOString(),
    loadAverageAtStart: loadAverage(),
    addon: describeAddon(),
  };
}

module.exports = { describeMachine, describeAddon, elfSectionNames, loadAverage };

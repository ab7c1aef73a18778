#!/usr/bin/env node
'use strict';

// Packs what gets published, the napi-rs way: the main package (JavaScript
// and types, no install script, the platform packages as
// optionalDependencies) and one small package per platform holding its
// `.node` file.
//
//   npm run pack                      this machine's platform, from the
//                                     addon `npm run build` made
//   npm run pack -- --artifacts DIR   every platform in package.json's
//                                     napi.targets, from the .node files the
//                                     release workflow collected under DIR
//   --out DIR                         where the tarballs go (default dist/)
//
// Prints the tarballs' paths, one a line, as JSON on the last line too.

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { currentPlatform, SUPPORTED } = require('../lib/native');

const ROOT = path.join(__dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const BINARY = manifest.napi.binaryName;

function fail(message) {
  process.stderr.write(`pack: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { out: path.join(ROOT, 'dist'), artifacts: null };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) fail(`${name} needs a value`);
    if (name === '--out') args.out = path.resolve(value);
    else if (name === '--artifacts') args.artifacts = path.resolve(value);
    else fail(`unknown option ${name} (known: --out DIR, --artifacts DIR)`);
  }
  return args;
}

/** `npm pack` of a folder into `out`; returns the tarball's path. */
function npmPack(folder, out) {
  const output = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], { cwd: folder, encoding: 'utf8' });
  const [{ filename }] = JSON.parse(output);
  return path.join(out, filename);
}

/** The files `npm pack` would take from the checkout (package.json's `files`, README, LICENSE). */
function publishedFiles() {
  const output = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
  return JSON.parse(output)[0].files.map((file) => file.path);
}

/** os, cpu and libc of a platform name such as linux-arm64-musl. */
function platformFields(platform) {
  const [osName, cpu, libc] = platform.split('-');
  return { os: [osName], cpu: [cpu], ...(libc ? { libc: [libc === 'gnu' ? 'glibc' : 'musl'] } : {}) };
}

function packMain(staging, out, platforms) {
  const dir = path.join(staging, 'main');
  for (const file of publishedFiles()) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.copyFileSync(path.join(ROOT, file), path.join(dir, file));
  }
  // What a user installs: no build or test scripts (they name files that are
  // not shipped), no dev tooling; the platform packages as optional
  // dependencies, of which npm installs the one matching the machine.
  const published = { ...manifest };
  for (const field of ['scripts', 'devDependencies', 'jest', 'allowScripts']) delete published[field];
  published.optionalDependencies = Object.fromEntries(SUPPORTED.map((platform) => [`${manifest.name}-${platform}`, manifest.version]));
  if (!platforms.every((platform) => SUPPORTED.includes(platform))) fail(`a platform outside napi.targets: ${platforms}`);
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
  return npmPack(dir, out);
}

function packPlatform(staging, out, platform, nodeFile) {
  const dir = path.join(staging, platform);
  fs.mkdirSync(dir, { recursive: true });
  const binary = `${BINARY}.${platform}.node`;
  fs.copyFileSync(nodeFile, path.join(dir, binary));
  const packageJson = {
    name: `${manifest.name}-${platform}`,
    version: manifest.version,
    description: `The ${platform} binary of ${manifest.name}`,
    main: binary,
    files: [binary],
    ...platformFields(platform),
    license: manifest.license,
    repository: manifest.repository,
    engines: manifest.engines,
  };
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(packageJson, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'README.md'), `# ${packageJson.name}\n\nThe ${platform} native addon of [${manifest.name}](${manifest.homepage}). Install \`${manifest.name}\`, not this package.\n`);
  return npmPack(dir, out);
}

/** Where the .node file of each platform is: this machine's build, or the release artifacts. */
function nodeFiles(artifacts) {
  if (!artifacts) {
    const platform = currentPlatform();
    const file = path.join(ROOT, `${BINARY}.${platform}.node`);
    if (!fs.existsSync(file)) fail(`${file} does not exist: run \`npm run build\` first`);
    return { [platform]: file };
  }
  const found = {};
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      const match = new RegExp(`^${BINARY}\\.(.+)\\.node$`).exec(entry.name);
      if (match) found[match[1]] = full;
    }
  };
  walk(artifacts);
  const missing = SUPPORTED.filter((platform) => !found[platform]);
  if (missing.length) fail(`no .node file under ${artifacts} for ${missing.join(', ')}`);
  return found;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const binaries = nodeFiles(args.artifacts);
  fs.mkdirSync(args.out, { recursive: true });
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-pack-'));
  try {
    const tarballs = Object.entries(binaries).map(([platform, file]) => packPlatform(staging, args.out, platform, file));
    tarballs.unshift(packMain(staging, args.out, Object.keys(binaries)));
    for (const tarball of tarballs) console.log(tarball);
    console.log(JSON.stringify(tarballs));
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

main();

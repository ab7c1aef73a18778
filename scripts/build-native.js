#!/usr/bin/env node
'use strict';

// Builds the native addon from source in a checkout: `npm run build`
// (release), `npm run build:debug`, and `npm install` in the checkout
// through the `prepare` script. Published installs never run this: they take
// the prebuilt platform package (lib/native.js).
//
// Writes cluster-shm.<platform>.node next to package.json, where
// lib/native.js looks first, and binding.d.ts (the generated types of the
// native classes, for reference).

const { spawnSync } = require('node:child_process');
const path = require('node:path');

const ROOT = path.join(__dirname, '..');
const MINIMUM_RUST = '1.88.0';

function fail(message) {
  process.stderr.write(`cluster-shm: ${message}\n`);
  process.exit(1);
}

function rustVersion() {
  const result = spawnSync('rustc', ['--version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return null;
  const match = /^rustc (\d+\.\d+\.\d+)/.exec(result.stdout);
  return match ? match[1] : null;
}

function atLeast(version, minimum) {
  const [a, b] = [version, minimum].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
}

// --debug builds without optimisations; anything else goes to `napi build`
// (the release workflow passes --target, --strip and its cross-compilation flags).
const debug = process.argv.includes('--debug');
const passed = process.argv.slice(2).filter((arg) => arg !== '--debug');
const version = rustVersion();
if (!version) {
  fail(
    `building the native addon from source needs a Rust toolchain (${MINIMUM_RUST} or newer) and none was found on PATH. ` +
      'Install one from https://rustup.rs and run `npm run build`. (Users of the published package need no Rust: ' +
      '`npm install cluster-shm` takes a prebuilt binary.)',
  );
}
if (!atLeast(version, MINIMUM_RUST)) fail(`building the native addon needs Rust ${MINIMUM_RUST} or newer; rustc is ${version} (rustup update)`);

const napi = path.join(ROOT, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
const args = [napi, 'build', '--platform', '--no-js', '--dts', 'binding.d.ts', ...(debug ? [] : ['--release']), ...passed];
const { status, signal } = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'inherit' });
process.exit(status ?? (signal ? 1 : 0));

'use strict';

/**
 * Loads the native addon.
 *
 * A published install finds it in the platform package npm chose among the
 * main package's optionalDependencies (`cluster-shm-linux-x64-gnu`, …: one
 * `.node` file each, no install script). A checkout finds the file
 * `npm run build` writes next to package.json, which comes first so that a
 * contributor's build is the one under test.
 */

const fs = require('node:fs');
const path = require('node:path');
const { shmError, CODES } = require('./errors');

const ROOT = path.join(__dirname, '..');
const { name: PACKAGE, napi } = require('../package.json');

/** The platform names napi-rs gives its targets, e.g. linux-x64-gnu, darwin-arm64. */
const PLATFORM_OF_TARGET = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'aarch64-unknown-linux-musl': 'linux-arm64-musl',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
};

/** The platforms with a prebuilt package, from package.json's napi.targets. */
const SUPPORTED = napi.targets.map((target) => {
  const platform = PLATFORM_OF_TARGET[target];
  if (!platform) throw new Error(`lib/native.js does not know the napi target ${target}`);
  return platform;
});

/** glibc or musl: Node's own report names the glibc it runs on, and nothing on musl. */
function linuxLibc() {
  const header = process.report && typeof process.report.getReport === 'function' ? process.report.getReport().header : undefined;
  return header && header.glibcVersionRuntime ? 'gnu' : 'musl';
}

/** This process's platform in napi-rs's naming. */
function currentPlatform() {
  const base = `${process.platform}-${process.arch}`;
  return process.platform === 'linux' ? `${base}-${linuxLibc()}` : base;
}

function fromSource() {
  return (
    'To build it from source: install Rust 1.88 or newer (rustup.rs), then in a checkout of the repository run ' +
    '`npm install` (which builds the addon) and install that folder; see CONTRIBUTING.md.'
  );
}

function load(platform = currentPlatform()) {
  const local = path.join(ROOT, `${napi.binaryName}.${platform}.node`);
  if (fs.existsSync(local)) return require(local);

  const packageName = `${PACKAGE}-${platform}`;
  try {
    return require(packageName);
  } catch (error) {
    if (error.code !== 'MODULE_NOT_FOUND' || !String(error.message).includes(packageName)) {
      throw shmError(CODES.NATIVE_LOAD, `cluster-shm could not load its native addon from ${packageName}: ${error.message}`);
    }
  }
  if (!SUPPORTED.includes(platform)) {
    throw shmError(
      CODES.UNSUPPORTED_PLATFORM,
      `cluster-shm has no prebuilt binary for ${platform} (Node ${process.version}); ` +
        `prebuilt: ${SUPPORTED.join(', ')}. ${fromSource()}`,
    );
  }
  throw shmError(
    CODES.NATIVE_LOAD,
    `cluster-shm's native addon for ${platform} is not installed: the optional dependency ${packageName} is missing. ` +
      'Reinstall without --omit=optional or --no-optional (a lockfile made on another platform can also leave it out: ' +
      `run \`npm install ${packageName}\`). ${fromSource()}`,
  );
}

module.exports = { load, currentPlatform, SUPPORTED, PLATFORM_OF_TARGET };

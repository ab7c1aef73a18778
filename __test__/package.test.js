'use strict';

// The package as users get it: `npm run pack` makes the main tarball and
// this machine's platform tarball; a fresh project installs both on a PATH
// with no Rust toolchain, and uses them from CommonJS, ESM, TypeScript and a
// 2-worker cluster.

const { execFile, spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { promisify } = require('node:util');
const { describeOn } = require('./backend');
const { cleanEnv, outputOf } = require('./helpers');

const run = promisify(execFile);
const ROOT = path.join(__dirname, '..');
const manifest = require('../package.json');
const { currentPlatform } = require('../lib/native');

const PLATFORM = currentPlatform();
const PLATFORM_PACKAGE = `${manifest.name}-${PLATFORM}`;

/** PATH without the folders that hold cargo or rustc. */
function pathWithoutRust() {
  return (process.env.PATH || '')
    .split(path.delimiter)
    .filter((dir) => !['cargo', 'rustc', 'rustup'].some((tool) => fs.existsSync(path.join(dir, tool))))
    .join(path.delimiter);
}

/** Every file below `dir`, relative to it. */
function walk(dir, base = dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? walk(full, base) : [path.relative(base, full)];
  });
}

/** Relative link targets of a Markdown text (no scheme, not an anchor), without their #fragment. */
function relativeLinks(markdown) {
  const targets = [...markdown.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g), ...markdown.matchAll(/^\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1]);
  return targets.filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target) && !target.startsWith('#')).map((target) => target.split('#')[0]);
}

describeOn(['embedded'], 'packs and installs the package once, in the embedded run', 'the published package', () => {
  let work;
  let project;
  let env;
  let tarballs;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-package-'));
    const { stdout } = await run(process.execPath, [path.join(ROOT, 'scripts', 'pack.js'), '--out', path.join(work, 'dist')], { cwd: ROOT });
    tarballs = JSON.parse(stdout.trim().split('\n').at(-1));
    project = path.join(work, 'app');
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    for (const file of ['app.js', 'import.mjs', 'types.ts', 'types.mts']) fs.copyFileSync(path.join(__dirname, 'fixtures', 'installed', file), path.join(project, file));
    // Nothing of the npm run that started the suite leaks into the user's install.
    env = cleanEnv({ PATH: pathWithoutRust() });
    for (const name of Object.keys(env)) if (/^npm_/i.test(name)) delete env[name];
    Object.assign(env, { npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' });
    await run('npm', ['install', '--prefer-offline', ...tarballs], { cwd: project, env, timeout: 120_000 });
  }, 180_000);

  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  test('npm run pack writes the main tarball and this platform’s', () => {
    expect(tarballs.map((file) => path.basename(file))).toEqual([`${manifest.name}-${manifest.version}.tgz`, `${PLATFORM_PACKAGE}-${manifest.version}.tgz`]);
  });

  test('the install ran with no Rust toolchain on PATH', async () => {
    const found = await run('sh', ['-c', 'command -v cargo rustc || true'], { env });
    expect(found.stdout).toBe('');
  });

  test('the installed main package lists every platform package as optional, and has no install script or build tooling', () => {
    const installed = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', manifest.name, 'package.json'), 'utf8'));
    expect(Object.keys(installed.optionalDependencies)).toEqual(
      ['linux-x64-gnu', 'linux-x64-musl', 'linux-arm64-gnu', 'linux-arm64-musl', 'darwin-x64', 'darwin-arm64'].map((p) => `${manifest.name}-${p}`),
    );
    expect(new Set(Object.values(installed.optionalDependencies))).toEqual(new Set([manifest.version]));
    expect({ scripts: installed.scripts, dependencies: Object.keys(installed.dependencies) }).toEqual({ scripts: undefined, dependencies: ['ioredis'] });
    const platformPackage = JSON.parse(fs.readFileSync(path.join(project, 'node_modules', PLATFORM_PACKAGE, 'package.json'), 'utf8'));
    expect({ os: platformPackage.os, cpu: platformPackage.cpu, main: platformPackage.main }).toEqual({
      os: [process.platform],
      cpu: [process.arch],
      main: `${manifest.napi.binaryName}.${PLATFORM}.node`,
    });
  });

  test('node_modules holds no build output: one .node file, from the platform package, and no Rust sources or target/', () => {
    const files = walk(path.join(project, 'node_modules'));
    expect(files.filter((file) => file.endsWith('.node'))).toEqual([path.join(PLATFORM_PACKAGE, `${manifest.napi.binaryName}.${PLATFORM}.node`)]);
    const buildOutput = files.filter((file) => /(^|\/)(target|src)\/|\.rs$|(^|\/)Cargo\.(toml|lock)$|(^|\/)build\.rs$|(^|\/)binding\.js$/.test(file) && file.startsWith(manifest.name));
    expect(buildOutput).toEqual([]);
    const toolchain = fs.readdirSync(path.join(project, 'node_modules')).filter((name) => ['@napi-rs', 'typescript', 'jest'].includes(name));
    expect(toolchain).toEqual([]);
  });

  test('require() works, and a 2-worker cluster shares a value through the installed package', async () => {
    const { stdout } = await run(process.execPath, ['app.js'], { cwd: project, env, timeout: 60_000 });
    expect(JSON.parse(stdout)).toEqual({
      seen: [
        { worker: 1, greeting: { from: 'primary', at: 'start' }, role: 'worker' },
        { worker: 2, greeting: { from: 'primary', at: 'start' }, role: 'worker' },
      ],
      visits: 2,
      role: 'primary',
    });
  });

  test('import works for the package and every subpath', async () => {
    const { stdout } = await run(process.execPath, ['import.mjs'], { cwd: project, env, timeout: 30_000 });
    expect(JSON.parse(stdout)).toEqual({ value: [1, 2, 3], connect: 'function', named: 1, session: 'function', keyv: 'function', compat: 'object' });
  });

  test('every subpath export type-checks from TypeScript with node16 resolution', async () => {
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = ['--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--typeRoots', path.join(ROOT, 'node_modules', '@types'), '--types', 'node', 'types.ts', 'types.mts'];
    const result = await run(process.execPath, [tsc, ...args], { cwd: project, env }).then(
      () => 'ok',
      (error) => error.stdout,
    );
    expect(result).toBe('ok');
    const typesOf = (target) => (typeof target !== 'object' ? [] : Object.entries(target).flatMap(([condition, value]) => (condition === 'types' ? [value] : typesOf(value))));
    const subpaths = Object.entries(manifest.exports).filter(([subpath]) => subpath !== './package.json');
    const missing = subpaths.flatMap(([subpath, target]) => {
      const types = typesOf(target);
      if (types.length === 0) return [`${subpath}: no types`];
      return types.filter((file) => !fs.existsSync(path.join(project, 'node_modules', manifest.name, file))).map((file) => `${subpath}: ${file}`);
    });
    expect(missing).toEqual([]);
  });

  test('npx cluster-shm serve stops when npx gets SIGTERM, leaving no broker or socket', async () => {
    const runtime = path.join(work, 'run');
    fs.mkdirSync(runtime, { mode: 0o700 });
    const socket = path.join(runtime, 'serve.sock');
    const npx = spawn('npx', ['cluster-shm', 'serve', '--socket', socket], { cwd: project, env: { ...env, XDG_RUNTIME_DIR: runtime }, stdio: ['ignore', 'ignore', 'pipe'] });
    await outputOf(npx, 'stderr').printed('listening on');
    const [file] = fs.readdirSync(path.join(runtime, 'cluster-shm'));
    const { pid } = JSON.parse(fs.readFileSync(path.join(runtime, 'cluster-shm', file), 'utf8'));
    npx.kill('SIGTERM');
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    try {
      for (let waited = 0; alive() && waited < 15_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
      expect({ brokerRunning: alive(), socketLeft: fs.existsSync(socket), listed: fs.readdirSync(path.join(runtime, 'cluster-shm')) }).toEqual({
        brokerRunning: false,
        socketLeft: false,
        listed: [],
      });
    } finally {
      // An orphaned broker would hold the test's pipe open and keep jest from exiting.
      if (alive()) process.kill(pid, 'SIGKILL');
    }
  }, 30_000);

  test('every file the README and the docs link to is in the package', () => {
    const dir = path.join(project, 'node_modules', manifest.name);
    const pages = ['README.md', ...fs.readdirSync(path.join(dir, 'docs')).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];
    expect(pages).toEqual(expect.arrayContaining(['docs/README.md', 'docs/api.md', 'docs/security.md']));
    const broken = pages.flatMap((page) =>
      relativeLinks(fs.readFileSync(path.join(dir, page), 'utf8'))
        .filter((link) => link !== '' && !fs.existsSync(path.join(dir, path.dirname(page), link)))
        .map((link) => `${page}: ${link}`),
    );
    expect(broken).toEqual([]);
  });

  test('the tarball holds only what a user needs (npm pack --dry-run)', async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const files = JSON.parse(stdout)[0].files.map((file) => file.path);
    const needed = /^(package\.json|README\.md|LICENSE|(index|compat|session|keyv|prometheus)\.(js|d\.ts)|index\.(mjs|d\.mts)|lib\/(backends\/)?[\w-]+\.js|bin\/cluster-shm\.js|docs\/[\w-]+\.md)$/;
    expect(files.filter((file) => !needed.test(file))).toEqual([]);
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'index.js', 'index.d.ts', 'lib/native.js', 'bin/cluster-shm.js']));
  });
});

describeOn(['embedded'], 'checks the repository’s files once, in the embedded run', 'the release workflow', () => {
  const yaml = require('js-yaml');
  const workflow = yaml.load(fs.readFileSync(path.join(ROOT, '.github', 'workflows', 'release.yml'), 'utf8'));
  const steps = Object.values(workflow.jobs).flatMap((job) => job.steps);

  test('builds exactly the targets package.json names, each for the platform package the loader looks for', () => {
    const built = workflow.jobs.build.strategy.matrix.settings.map((s) => s.target);
    expect(built).toEqual(manifest.napi.targets);
  });

  test('every npm script and file its steps run exists', () => {
    const commands = steps.map((step) => step.run).filter(Boolean);
    const scripts = commands.flatMap((command) => [...command.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]));
    expect(scripts.filter((name) => !manifest.scripts[name])).toEqual([]);
    const files = commands.flatMap((command) => [...command.matchAll(/(?:node|bash) ((?:scripts|\.ci)\/[\w./-]+)/g)].map((m) => m[1]));
    expect(files.length).toBeGreaterThan(0);
    expect(files.filter((file) => !fs.existsSync(path.join(ROOT, file)))).toEqual([]);
  });

  test('its packing step makes one package per platform from the collected artifacts, plus the main package', async () => {
    // The layout actions/download-artifact gives: one folder per build job.
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cluster-shm-artifacts-'));
    try {
      const { PLATFORM_OF_TARGET } = require('../lib/native');
      for (const target of manifest.napi.targets) {
        const dir = path.join(work, 'artifacts', `bindings-${target}`);
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, `${manifest.napi.binaryName}.${PLATFORM_OF_TARGET[target]}.node`), `binary for ${target}`);
      }
      const out = path.join(work, 'dist');
      await run(process.execPath, [path.join(ROOT, 'scripts', 'pack.js'), '--artifacts', path.join(work, 'artifacts'), '--out', out], { cwd: ROOT });
      const packages = {};
      for (const tarball of fs.readdirSync(out).sort()) {
        const { stdout } = await run('tar', ['-xzOf', path.join(out, tarball), 'package/package.json']);
        const { name, os: osField, cpu, libc, main } = JSON.parse(stdout);
        packages[name] = { os: osField, cpu, libc, main };
      }
      const platform = (os_, cpu, libc, name) => ({ os: [os_], cpu: [cpu], libc, main: `cluster-shm.${name}.node` });
      expect(packages).toEqual({
        'cluster-shm': { os: undefined, cpu: undefined, libc: undefined, main: 'index.js' },
        'cluster-shm-darwin-arm64': platform('darwin', 'arm64', undefined, 'darwin-arm64'),
        'cluster-shm-darwin-x64': platform('darwin', 'x64', undefined, 'darwin-x64'),
        'cluster-shm-linux-arm64-gnu': platform('linux', 'arm64', ['glibc'], 'linux-arm64-gnu'),
        'cluster-shm-linux-arm64-musl': platform('linux', 'arm64', ['musl'], 'linux-arm64-musl'),
        'cluster-shm-linux-x64-gnu': platform('linux', 'x64', ['glibc'], 'linux-x64-gnu'),
        'cluster-shm-linux-x64-musl': platform('linux', 'x64', ['musl'], 'linux-x64-musl'),
      });
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

describe('the native loader', () => {
  test('a platform with no prebuilt binary gets an error that names it and says how to build from source', () => {
    const { load } = require('../lib/native');
    let error;
    try {
      load('linux-riscv64-gnu');
    } catch (caught) {
      error = caught;
    }
    expect({ code: error.code, message: error.message }).toEqual({
      code: 'ERR_SHM_UNSUPPORTED_PLATFORM',
      message: expect.stringMatching(/no prebuilt binary for linux-riscv64-gnu .*prebuilt: linux-x64-gnu, .*Rust 1\.88 or newer/),
    });
  });

  test('a supported platform whose optional package is missing says which package and why', () => {
    const { load, SUPPORTED } = require('../lib/native');
    const other = SUPPORTED.find((platform) => platform !== PLATFORM);
    let error;
    try {
      load(other);
    } catch (caught) {
      error = caught;
    }
    expect({ code: error.code, message: error.message }).toEqual({
      code: 'ERR_SHM_NATIVE_LOAD',
      message: expect.stringContaining(`the optional dependency cluster-shm-${other} is missing. Reinstall without --omit=optional`),
    });
  });
});

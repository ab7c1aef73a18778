'use strict';

// Every JavaScript snippet of README.md and docs/*.md runs here, so the docs
// cannot drift from the code. A fenced block marked js, javascript, cjs or
// mjs is a complete program: it is written to
// __test__/fixtures/generated/docs/<file>-<line>.<js|mjs> (inside the
// repository, so require('cluster-shm') resolves to it by self-reference),
// run with node, and must exit 0 within 30 s. A ```text block that follows
// it with nothing but blank lines between is its output: stdout must be
// exactly that text. A `redis` attribute (```js redis) runs the snippet with
// CLUSTER_SHM_URL pointing at a redis-server of its own. Anything that is not
// a runnable program (shell, output, TypeScript) takes another fence
// language (sh, text, ts).

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { describeOn } = require('./backend');
const { cleanEnv, testWithTool } = require('./helpers');
const { startRedis } = require('./redis-server');

const ROOT = path.join(__dirname, '..');
const OUT = path.join(__dirname, 'fixtures', 'generated', 'docs');
const LANGUAGES = { js: 'js', javascript: 'js', cjs: 'js', mjs: 'mjs' };
const ATTRIBUTES = new Set(['redis']);

/** README.md and every docs/*.md, relative to the repository. */
function documents() {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`);
  return ['README.md', ...docs];
}

/** The fenced blocks of a Markdown text: { info, line (of the opening fence, 1-based), body }. */
function fencedBlocks(markdown) {
  const lines = markdown.split('\n');
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, info] = open;
    const body = [];
    let j = i + 1;
    while (j < lines.length && !(lines[j].trim().startsWith(fence) && lines[j].trim().replace(/[`~]/g, '') === '')) {
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
      j++;
    }
    blocks.push({ info: info.trim(), line: i + 1, end: j + 1, body: `${body.join('\n')}\n` });
    i = j;
  }
  return blocks;
}

/** The runnable snippets of one document, each with its expected output when a ```text block follows it. */
function snippetsOf(file) {
  const markdown = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const lines = markdown.split('\n');
  const blocks = fencedBlocks(markdown);
  const snippets = [];
  blocks.forEach((block, index) => {
    const [language = '', ...attributes] = block.info.split(/\s+/);
    const extension = LANGUAGES[language.toLowerCase()];
    if (!extension) return;
    const next = blocks[index + 1];
    const between = next ? lines.slice(block.end, next.line - 1) : [];
    const output = next && next.info === 'text' && between.every((line) => line.trim() === '') ? next.body : null;
    snippets.push({ file, line: block.line, extension, attributes, code: block.body, output });
  });
  return snippets;
}

function runSnippet(snippet, env) {
  const name = `${snippet.file.replace(/\.md$/, '').replace(/\//g, '_')}-${snippet.line}.${snippet.extension}`;
  const file = path.join(OUT, name);
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(file, snippet.code);
  return new Promise((resolve) => {
    execFile(process.execPath, [file], { cwd: OUT, env: cleanEnv(env), timeout: 30_000, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr, file: path.relative(ROOT, file) });
    });
  });
}

async function check(snippet, env = {}) {
  const result = await runSnippet(snippet, env);
  const failure = `${result.file} exited with ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
  expect({ code: result.code, why: result.code === 0 ? null : failure }).toEqual({ code: 0, why: null });
  if (snippet.output !== null) expect(result.stdout).toBe(snippet.output);
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function slug(heading) {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .trim()
    .replace(/\s/g, '-');
}

/** The anchors of a Markdown file's headings (outside fenced blocks). */
function anchorsOf(file) {
  const markdown = fs.readFileSync(file, 'utf8');
  const inFence = new Set(fencedBlocks(markdown).flatMap((block) => Array.from({ length: block.end - block.line + 1 }, (_, i) => block.line + i)));
  return new Set(
    markdown
      .split('\n')
      .filter((line, i) => !inFence.has(i + 1) && /^#{1,6}\s/.test(line))
      .map((line) => slug(line.replace(/^#+\s+/, ''))),
  );
}

/** Relative links of a document (anchors within it included) that name no file, or no heading of that file. */
function brokenLinks(file) {
  const markdown = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const targets = [...markdown.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]).filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target));
  return targets.filter((target) => {
    const [where, anchor] = target.split('#');
    const linked = where === '' ? path.join(ROOT, file) : path.join(ROOT, path.dirname(file), where);
    if (!fs.existsSync(linked)) return true;
    return anchor !== undefined && linked.endsWith('.md') && !anchorsOf(linked).has(anchor);
  });
}

const snippets = documents().flatMap(snippetsOf);

describeOn(['embedded'], 'checks the repository’s files once, in the embedded run', 'the docs against the repository', () => {
  test('every relative link of the README and the docs names a file of the repository, and a heading of it', () => {
    const broken = documents().flatMap((file) => brokenLinks(file).map((target) => `${file}: ${target}`));
    expect(broken).toEqual([]);
  });

  test('the errors table of docs/api.md has a row for every code', () => {
    const { CODES } = require('../lib/errors');
    const api = fs.readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');
    expect(Object.values(CODES).filter((code) => !api.includes(`| \`${code}\` |`))).toEqual([]);
  });
});

describeOn(['embedded'], 'each snippet starts its own broker, once, in the embedded run', 'the snippets of the docs', () => {
  beforeAll(() => fs.rmSync(OUT, { recursive: true, force: true }));

  test('the docs hold snippets, and each uses only the attributes this test knows', () => {
    expect(snippets.length).toBeGreaterThan(10);
    const unknown = snippets.filter((s) => s.attributes.some((a) => !ATTRIBUTES.has(a))).map((s) => `${s.file}:${s.line}`);
    expect(unknown).toEqual([]);
  });

  for (const snippet of snippets) {
    const name = `${snippet.file}:${snippet.line}${snippet.output === null ? '' : ', with its output'}`;
    if (snippet.attributes.includes('redis')) {
      testWithTool('redis-server', `${name} (on redis-server)`, async () => {
        const redis = await startRedis();
        try {
          await check(snippet, { CLUSTER_SHM_URL: redis.url });
        } finally {
          await redis.stop();
        }
      }, 45_000);
    } else {
      test(name, () => check(snippet), 45_000);
    }
  }
});

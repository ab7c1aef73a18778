'use strict';

/** The markdown report: machine, one table per workload, raw server, memory per key, a worker's keys(), targets. */

const fs = require('node:fs');
const path = require('node:path');
const { SYSTEMS } = require('../systems');
const { WORKLOADS } = require('./workload');
const { int, micros, bytes, ratio, hitRate, table } = require('./format');
const { findRun } = require('./targets');

function label(id) {
  return SYSTEMS.find((s) => s.id === id).label;
}

function memoryCell(run) {
  const m = run.memory || {};
  const parts = [];
  if (Number.isFinite(m.storePeak)) parts.push(`store ${bytes(m.storePeak)}`);
  if (Number.isFinite(m.rssPeak) && m.rssPeak > 0) parts.push(`RSS ${bytes(m.rssPeak)}`);
  return parts.join(' · ') || '—';
}

function workloadSection(report, workload) {
  const spec = WORKLOADS[workload];
  const runs = report.runs.filter((r) => r.workload === workload);
  if (runs.length === 0) return '';
  const matrix = report.matrix[workload];
  const lines = [];
  lines.push(`## ${spec.title}`);
  lines.push('');
  const gets = Math.round(spec.getShare * 100);
  lines.push(
    `${gets}/${100 - gets} get/set over ${int(spec.keys)} pre-filled keys, ${spec.values === 'json' ? `an object whose JSON is ${spec.valueBytes} bytes` : `${int(spec.valueBytes)}-byte Buffers`}; ` +
      `workers ${matrix.workers.join(', ')} × in flight per worker ${matrix.depths.join(', ')}.`,
  );
  if (spec.name === 'read') {
    lines.push('');
    lines.push(
      `The case a near cache is for. Reduced on purpose to ${matrix.workers.join(', ')} worker(s) and ${(matrix.systems || []).length} systems (${(matrix.systems || []).join(', ')}), to stay within the time budget. ` +
        'Before the warm-up every worker reads every key once (all systems alike), so a near cache starts full as in a long-running server rather than filling up during the short run; its hit rate then falls towards the steady state as writes invalidate entries. ' +
        'Every value written names its key and a version of its own, so every get (near-cache hits included) is checked to return a value of that very key, intact; ' +
        'after the load, with nothing writing, every worker reads every key once more and the views are compared with the store (cluster-shm: read in the primary) or with each other: ' +
        'a worker still seeing an older value counts as *stale*.',
    );
  }
  if (spec.name === 'buffer') {
    lines.push('');
    lines.push(
      `Reduced on purpose: ${int(spec.keys)} keys instead of 10,000 and only ${matrix.workers.join(', ')} worker(s), because the IPC peers carry a Buffer as JSON ` +
        '(`{ type: "Buffer", data: [...] }`, ~230 KB per 64 KiB value) and hold it as a JS array (~512 KiB each): 10,000 keys would not fit their heaps, and the full matrix would not fit the time budget.',
    );
  }
  lines.push('');
  const rows = [];
  const notes = [];
  const nearColumn = runs.some((r) => r.ok && r.nearCache);
  const combos = [...new Map(runs.map((r) => [`${r.workers}x${r.depth}`, r])).values()].sort((a, b) => a.workers - b.workers || a.depth - b.depth);
  for (const combo of combos) {
    const base = findRun(report.runs, 'cluster-shm', combo.workers, combo.depth, workload);
    for (const system of SYSTEMS) {
      const run = runs.find((r) => r.system === system.id && r.workers === combo.workers && r.depth === combo.depth);
      if (!run) continue;
      if (!run.ok) {
        rows.push([system.label, run.workers, run.depth, 'failed', '—', '—', '—', '—', ...(nearColumn ? ['—'] : [])]);
        notes.push(`${system.label}, ${run.workers} worker(s), ${run.depth} in flight: failed: ${String(run.error).split('\n')[0]}`);
        continue;
      }
      let flag = '';
      const where = `${system.label}, ${run.workers} worker(s), ${run.depth} in flight`;
      if (run.errors || run.misses || run.wrong) {
        flag = ' ⚠';
        notes.push(
          `${where}: ${run.errors} errors, ${run.misses} get misses, ${run.wrong} wrong values` +
            (run.firstError ? ` (first error: ${run.firstError.split('\n')[0]})` : ''),
        );
      }
      const v = run.verify;
      if (v && (v.stale || v.misses || v.wrong || v.errors)) {
        flag = ' ⚠';
        notes.push(
          `${where}: after the load, ${v.stale} of ${int(v.keys)} keys stale (compared with ${v.against}), ${v.misses} misses, ${v.wrong} wrong values, ${v.errors} errors` +
            (v.staleExamples.length ? ` (e.g. ${v.staleExamples.map((e) => `key ${e.key}: ${e.store === undefined ? '' : `store id ${e.store}, `}workers saw ids ${e.workers.join(' / ')}`).join('; ')})` : '') +
            (v.firstError ? ` (first error: ${v.firstError.split('\n')[0]})` : ''),
        );
      }
      for (const warning of run.warnings || []) {
        flag = ' ⚠';
        notes.push(`${where}: a worker warned: ${warning}`);
      }
      const near = run.nearCache;
      if (system.nearCache && !(near && near.workersWithCache === run.workers && near.hits > 0)) {
        flag = ' ⚠';
        notes.push(`${where}: the near cache served no reads${near ? '' : ' (no near cache counters)'}: this row is cluster-shm without it`);
      }
      rows.push([
        system.label + flag,
        run.workers,
        run.depth,
        int(run.opsPerSec),
        micros(run.latencyNs.p50),
        micros(run.latencyNs.p99),
        memoryCell(run),
        run.serverBusy === null || run.serverBusy === undefined ? '—' : `${(run.serverBusy * 100).toFixed(1)} %`,
        base ? ratio(run.opsPerSec, base.opsPerSec) : '—',
        ...(nearColumn ? [run.nearCache ? hitRate(run.nearCache) : '—'] : []),
      ]);
    }
  }
  lines.push(
    table(
      [
        'system',
        'workers',
        'in-flight',
        'ops/s',
        'p50 (µs)',
        'p99 (µs)',
        'peak memory',
        'server CPU',
        'ops/s vs cluster-shm (same workers/in-flight)',
        ...(nearColumn ? ['near-cache hit rate'] : []),
      ],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'l', 'r', 'r', 'r'],
    ),
  );
  lines.push('');
  lines.push(
    '"in-flight" is requests in flight per worker. ops/s is the sum over workers of requests completed in the measured window; p50/p99 come from the merged latency histograms of all workers. ' +
      'Peak memory is of the process holding the data: *store* is the store\'s own accounting (cluster-shm `stats().peakMemory`, redis `used_memory_peak`; lmdb-js, whose data is a file every process maps, that file\'s allocated size), ' +
      '*RSS* the highest of samples taken every 100 ms (cluster-shm `stats().residentMemory` = the primary that hosts the broker; redis `used_memory_rss`; JS peers and lmdb-js the primary\'s `process.memoryUsage().rss`). ' +
      '*Server CPU* is the CPU time, as a share of one core, that the process serving the data used during the measured window, all its threads counted: for cluster-shm the primary hosting the broker (the workers\' data calls run in the workers, on the mapped store), for the classic pattern and other JS peers the primary, for ioredis redis-server; lmdb-js has no server (its primary only waits).' +
      (runs.some((r) => r.system === 'cluster-shm-inprocess')
        ? ' The in-process row runs the load in the primary (its RSS includes the load generator); its ratio compares it with cluster-shm through 1 worker.'
        : ''),
  );
  if (nearColumn) {
    lines.push('');
    lines.push(
      'Near-cache hit rate: the gets served from the workers\' near caches over all their gets, in the measured window (each worker\'s `stats().nearCache` read as the window opens and after the load, the differences summed over workers). ' +
        'The near caches\' own memory is in the workers and not in *peak memory*.',
    );
    lines.push('');
    for (const run of runs.filter((r) => r.ok && r.nearCache)) {
      const n = run.nearCache;
      lines.push(
        `- ${label(run.system)}, ${run.workers} worker(s), ${run.depth} in flight: ${int(n.hits)} hits, ${int(n.misses)} misses in the window (${hitRate(n)})` +
          `${n.windowComplete ? '' : ' (a worker\'s counters at the window\'s start are missing: partial)'}; over the whole run ${hitRate({ hits: n.runHits, misses: n.runMisses })}; ${int(n.keysAtEnd)} keys cached at the end, summed over workers.`,
      );
    }
  }
  const repeated = runs.filter((r) => r.roundsOpsPerSec);
  if (repeated.length) {
    lines.push('');
    lines.push(
      `The ${repeated[0].workers}-worker runs ran ${repeated[0].roundsOpsPerSec.length} rounds, every system once per round in turn; each row shows its median round. ops/s of every round:`,
    );
    lines.push('');
    for (const run of repeated) {
      const rounds = run.roundsOpsPerSec.map((ops) => (ops === null ? 'failed' : int(ops))).join(' · ');
      lines.push(`- ${label(run.system)}, ${run.workers} workers, ${run.depth} in flight: ${rounds}`);
    }
  }
  const verified = runs.filter((r) => r.ok && r.verify);
  if (verified.length) {
    const clean = verified.filter((r) => !(r.verify.stale || r.verify.misses || r.verify.wrong || r.verify.errors));
    lines.push('');
    lines.push(
      `Views after the load: in ${clean.length} of ${verified.length} runs every worker read every one of the ${int(WORKLOADS[workload].keys)} keys as the store holds it ` +
        '(cluster-shm rows: compared with the store, read in the primary; other rows: the workers compared with each other) with no miss, wrong value or error.',
    );
  }
  if (notes.length) {
    lines.push('');
    for (const note of notes) lines.push(`- ⚠ ${note}`);
  }
  lines.push('');
  return lines.join('\n');
}

function rawSection(raw) {
  const lines = ['## Raw server: redis-benchmark', ''];
  if (!raw) return '';
  if (raw.skipped) return `${lines.join('\n')}\n${raw.skipped}\n`;
  lines.push(`Each server fresh on a Unix socket, ${raw.clients} clients (redis-benchmark's default). Commands:`);
  lines.push('');
  for (const command of [...new Set(raw.results.map((r) => r.command))]) lines.push(`- \`${command}\``);
  lines.push('');
  const rows = raw.results.map((r) => {
    const redis = raw.results.find((o) => o.server === 'redis-server' && o.pipeline === r.pipeline && !o.error);
    if (r.error) return [r.server, r.pipeline, 'failed', 'failed', '—', '—'];
    return [r.server, r.pipeline, int(r.get), int(r.set), redis ? ratio(r.get, redis.get) : '—', redis ? ratio(r.set, redis.set) : '—'];
  });
  lines.push(table(['server', '-P', 'GET req/s', 'SET req/s', 'GET vs redis-server', 'SET vs redis-server'], rows, ['l', 'r', 'r', 'r', 'r', 'r']));
  for (const r of raw.results.filter((x) => x.error)) lines.push(`\n- ⚠ ${r.server} -P ${r.pipeline}: ${r.error}`);
  lines.push('');
  return lines.join('\n');
}

function memorySection(memory) {
  if (!memory) return '';
  const lines = ['## Memory per 100-byte key', ''];
  if (memory.error) return `${lines.join('\n')}\nfailed: ${memory.error}\n`;
  lines.push(
    `${int(memory.keys)} keys of 100-byte JSON text, SET over the socket into a fresh server. *store* is the INFO \`used_memory\` delta (for the broker the same counter as \`stats().usedMemory\`), *RSS* the delta of the server process's VmRSS.`,
  );
  lines.push('');
  const redis = memory.results.find((r) => r.server === 'redis-server');
  const rows = memory.results.map((r) => [
    r.server,
    int(r.keys),
    r.usedPerKey.toFixed(1),
    r.rssPerKey.toFixed(1),
    bytes(r.usedAfter),
    bytes(r.rssAfter),
    redis ? ratio(r.usedPerKey, redis.usedPerKey) : '—',
    redis ? ratio(r.rssPerKey, redis.rssPerKey) : '—',
  ]);
  lines.push(
    table(
      ['server', 'keys', 'store B/key', 'RSS B/key', 'store total', 'RSS total', 'store vs redis-server', 'RSS vs redis-server'],
      rows,
      ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ),
  );
  lines.push('');
  return lines.join('\n');
}

function workerKeysSection(workerKeys) {
  if (!workerKeys) return '';
  const lines = ["## A worker's keys() of a million keys", ''];
  if (workerKeys.error) return `${lines.join('\n')}\nfailed: ${workerKeys.error}\n`;
  if (workerKeys.skipped) return `${lines.join('\n')}\n${workerKeys.skipped}\n`;
  lines.push(
    `${int(workerKeys.keys)} keys in a fresh standalone broker, listed by \`keys('*')\` through the client a worker uses (the JS RESP client over the socket) and by \`redis-cli KEYS '*'\` on the same socket (output to /dev/null, process start included); ${workerKeys.rounds} alternating rounds, the median reported.`,
  );
  lines.push('');
  lines.push(
    table(
      ['client', 'median ms', 'rounds (ms)', 'vs redis-cli'],
      [
        ['worker keys()', workerKeys.workerMedianMs.toFixed(0), workerKeys.workerMs.map((ms) => ms.toFixed(0)).join(', '), ratio(workerKeys.workerMedianMs, workerKeys.redisCliMedianMs)],
        ['redis-cli KEYS', workerKeys.redisCliMedianMs.toFixed(0), workerKeys.redisCliMs.map((ms) => ms.toFixed(0)).join(', '), '1.00×'],
      ],
      ['l', 'r', 'r', 'r'],
    ),
  );
  lines.push('');
  return lines.join('\n');
}

function targetsSection(targets) {
  const lines = ['## Targets', ''];
  const mark = { met: '✅ met', missed: '❌ missed', 'not measured': '— not measured' };
  lines.push(table(['target', 'required', 'measured', 'status'], targets.map((t) => [t.name, t.required, t.measured, mark[t.status]])));
  lines.push('');
  return lines.join('\n');
}

/**
 * The installed version of a package. Some (lmdb) do not export their
 * package.json: then it is the nearest package.json of that name above the
 * file the package resolves to.
 */
function packageVersion(name) {
  try {
    return require(`${name}/package.json`).version;
  } catch {
    // not installed, or package.json not exported
  }
  try {
    let dir = path.dirname(require.resolve(name));
    for (;;) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file)) {
        const manifest = JSON.parse(fs.readFileSync(file, 'utf8'));
        if (manifest.name === name) return manifest.version;
      }
      if (path.dirname(dir) === dir) break;
      dir = path.dirname(dir);
    }
  } catch {
    // not installed
  }
  return 'not installed';
}

function systemsSection(report) {
  const used = new Set(report.runs.map((r) => r.system));
  const lines = ['## Systems', ''];
  for (const system of SYSTEMS.filter((s) => used.has(s.id))) {
    const version = system.package ? ` ${packageVersion(system.package)}` : '';
    lines.push(`- **${system.label}**${version}: ${system.how}.`);
  }
  lines.push(
    '- The IPC peers (classic, memored, lru-cache-for-clusters-as-promised) send values with `process.send`, whose default serialization is JSON: a Buffer arrives as `{ type: "Buffer", data: [...] }` and their `get` turns it back into a Buffer.',
  );
  lines.push(
    "- Keys are pre-filled before timing through each system's own client (by worker 1, or by the primary for the in-process row); every get is checked to hit and to return a value of the right shape (in the read-heavy workload: the value of that very key).",
  );
  lines.push('');
  return lines.join('\n');
}

function addonLine(addon) {
  if (!addon || !addon.present) return '- ⚠ Native addon: missing';
  const warnings = [];
  if (addon.debugBuild) warnings.push('⚠ a DEBUG build: cluster-shm numbers are not representative');
  if (addon.newerSources.length) warnings.push(`⚠ older than ${addon.newerSources.join(', ')} (stale)`);
  const kind = addon.debugBuild ? 'debug' : 'release';
  return `- Native addon: ${kind} build, ${bytes(addon.bytes)}, built ${addon.builtAt}${warnings.length ? `; ${warnings.join('; ')}` : ''}`;
}

function renderMarkdown(report) {
  const m = report.machine;
  const header = [
    '# cluster-shm benchmark',
    '',
    `- CPU: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB RAM (${m.os})`,
    `- Node ${m.node}, cluster-shm ${m.clusterShm}, redis-server ${m.redis ?? 'not installed'}`,
    `- Date: ${m.date}; load average (1/5/15 min) at start ${m.loadAverageAtStart}, at end ${report.loadAverageAtEnd}`,
    `- Run: \`${report.command}\` (${report.full ? 'full default run' : 'partial run'}): warm-up ${report.options.warmup} s, measured ${report.options.duration} s per run, ` +
      `${report.runCount} runs, each a fresh process tree; ${report.elapsedSeconds.toFixed(0)} s in all`,
    addonLine(m.addon),
    ...report.warnings.map((message) => `- ⚠ ${message}`),
    ...report.skipped.map((message) => `- Skipped: ${message}`),
    '',
  ].join('\n');
  const sections = [
    header,
    systemsSection(report),
    ...Object.keys(WORKLOADS).map((workload) => workloadSection(report, workload)),
    rawSection(report.raw),
    memorySection(report.memoryPerKey),
    workerKeysSection(report.workerKeys),
    targetsSection(report.targets),
  ];
  return sections.filter(Boolean).join('\n');
}

module.exports = { renderMarkdown };

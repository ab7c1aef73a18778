'use strict';

/** Command-line flags of `npm run bench` and the plan of runs they give. */

const { SYSTEMS, systemById } = require('../systems');
const { TARGET_SYSTEMS } = require('./targets');

const WORKLOAD_NAMES = ['json', 'buffer', 'read'];
/** The worker count of the runs the targets compare. */
const TARGET_WORKERS = 2;

const USAGE = `usage: npm run bench -- [options]

  --quick              short runs and fewer combinations (warm-up 0.2 s, 0.6 s measured)
  --warmup SECONDS     warm-up before measuring, per run (default 0.5)
  --duration SECONDS   measured time per run (default 2)
  --only IDS           comma-separated systems to run on every selected workload
                       (${SYSTEMS.map((s) => s.id).join(', ')});
                       default: each workload's own set (read: ${SYSTEMS.filter((s) => s.workloads.includes('read')).map((s) => s.id).join(', ')})
  --workload NAME      json (50/50 get/set, 100 B), buffer (50/50, 64 KiB), read (90/10, 100 B) or all (default all)
  --workers LIST       worker counts (default 1,2,4 for json, 2 for buffer and read; quick 1,2 for json)
  --depths LIST        requests in flight per worker (default 1,64; quick 64 for 64 KiB)
  --rounds N           rounds of the runs the targets compare (100-byte JSON, 2 workers, the
                       systems they name), alternating; the median round is reported (default 3; quick 1)
  --no-raw             skip the redis-benchmark and memory-per-key sections
  --out PATH           write the report to PATH.{md,json,svg} instead of bench/results/latest
                       (for a partial run that should not replace the full run's results)
  --help               this text
`;

function list(text, name) {
  const values = String(text)
    .split(',')
    .map((v) => Number(v.trim()));
  if (values.length === 0 || values.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new Error(`${name} takes a comma-separated list of positive integers, got ${JSON.stringify(text)}`);
  }
  return values;
}

function seconds(text, name) {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} takes a positive number of seconds`);
  return value;
}

function parseArgs(argv) {
  const options = { quick: false, warmup: null, duration: null, only: null, workload: 'all', workers: null, depths: null, rounds: null, raw: true, out: null };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    if (flag === '--quick') options.quick = true;
    else if (flag === '--warmup') options.warmup = seconds(value(), flag);
    else if (flag === '--duration') options.duration = seconds(value(), flag);
    else if (flag === '--only') options.only = value().split(',').map((id) => systemById(id.trim()).id);
    else if (flag === '--workload') {
      options.workload = value();
      if (![...WORKLOAD_NAMES, 'all'].includes(options.workload)) throw new Error(`--workload is ${WORKLOAD_NAMES.join(', ')} or all`);
    } else if (flag === '--workers') options.workers = list(value(), flag);
    else if (flag === '--depths') options.depths = list(value(), flag);
    else if (flag === '--rounds') [options.rounds] = list(value(), flag);
    else if (flag === '--no-raw') options.raw = false;
    else if (flag === '--out') {
      options.out = value().replace(/\.(md|json|svg)$/, '');
      if (!options.out) throw new Error('--out takes a path');
    }
    else if (flag === '--help' || flag === '-h') options.help = true;
    else throw new Error(`unknown option ${JSON.stringify(flag)}\n\n${USAGE}`);
  }
  options.warmup ??= options.quick ? 0.2 : 0.5;
  options.duration ??= options.quick ? 0.6 : 2;
  options.rounds ??= options.quick ? 1 : 3;
  // A full run is the default matrix, nothing narrowed: only it is "full".
  options.full = !options.quick && !options.only && options.workload === 'all' && !options.workers && !options.depths && options.rounds === 3 && options.raw;
  return options;
}

/**
 * The runs, ordered workload → workers → depth → system, so the systems of
 * one combination run back to back under the same machine conditions.
 * The 64 KiB and the read-heavy workloads run 2 workers only, and each
 * workload its own set of systems (SYSTEMS[].workloads), to stay within the
 * time budget; `--only` runs exactly the systems it names. The combinations
 * the targets compare (100-byte JSON, 2 workers, the systems they name) run
 * `rounds` times with the systems alternating, so that a burst of outside
 * load hits one round of every system rather than all of one system's runs.
 */
function planRuns(options, { redisAvailable }) {
  const depths = options.depths ?? [1, 64];
  const matrix = {
    json: { workers: options.workers ?? (options.quick ? [1, 2] : [1, 2, 4]), depths },
    buffer: { workers: options.workers ?? [2], depths: options.depths ?? (options.quick ? [64] : [1, 64]) },
    read: { workers: options.workers ?? [2], depths },
  };
  const runs = [];
  for (const workload of WORKLOAD_NAMES) {
    if (options.workload !== 'all' && options.workload !== workload) continue;
    const systems = SYSTEMS.filter(
      (s) => (options.only ? options.only.includes(s.id) : s.workloads.includes(workload)) && (redisAvailable || !s.needsRedis),
    );
    matrix[workload].systems = systems.map((s) => s.id);
    const { workers: workerCounts, depths: depthList } = matrix[workload];
    for (const depth of depthList) {
      // The in-process row has one "worker": the primary itself.
      for (const system of systems.filter((s) => s.inProcess)) runs.push({ system: system.id, workload, workers: 1, depth });
    }
    for (const workers of workerCounts) {
      const rounds = workload === 'json' && workers === TARGET_WORKERS ? options.rounds : 1;
      for (const depth of depthList) {
        for (let round = 1; round <= rounds; round++) {
          // Systems no target compares run once.
          const inRound = systems.filter((s) => !s.inProcess && (round === 1 || TARGET_SYSTEMS.includes(s.id)));
          for (const system of inRound) runs.push({ system: system.id, workload, workers, depth, round, rounds });
        }
      }
    }
  }
  return { runs, matrix };
}

module.exports = { USAGE, parseArgs, planRuns };

'use strict';

/**
 * A hand-written SVG chart: one panel per workload (50/50, then 90/10), each
 * with grouped bars of throughput, one group per (workers × in-flight)
 * combination, one bar per system, on a log scale (the systems differ by
 * orders of magnitude, which a linear scale would flatten).
 */

const COLORS = {
  'cluster-shm': '#1f77b4',
  'cluster-shm-inprocess': '#9ecae1',
  classic: '#7f7f7f',
  memored: '#bcbd22',
  'lru-clusters': '#9467bd',
  ioredis: '#d62728',
  'ioredis-autopipeline': '#ff9896',
  lmdb: '#ff7f0e',
};

const escape = (text) => String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

function short(n) {
  let text;
  if (n >= 1e6) text = `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  else if (n >= 1e3) text = `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
  else text = String(Math.round(n));
  return text.replace(/\.0(?=[kM])/, '');
}

/**
 * One chart panel at vertical offset `y0`: title, legend, log-scale grid and
 * bars of one workload's runs. Returns { height, out } (SVG elements).
 */
function panel({ runs, systems, title, width, y0 }) {
  const combos = [...new Map(runs.map((r) => [`${r.workers}x${r.depth}`, { workers: r.workers, depth: r.depth }])).values()].sort(
    (a, b) => a.workers - b.workers || a.depth - b.depth,
  );
  const shown = systems.filter((s) => runs.some((r) => r.system === s.id));
  // Groups share the plot's width, each at least wide enough for its bars and its label.
  const groupWidth = Math.max(groupMinWidth(shown.length), (width - LEFT - RIGHT) / combos.length);
  const legendRows = Math.ceil(shown.length / 3);
  const top = y0 + 46 + legendRows * 22;
  const plotHeight = 340;
  const bottom = top + plotHeight;

  const values = runs.map((r) => r.opsPerSec).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values)));
  let hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  if (hi <= lo) hi = lo * 10;
  const y = (v) => bottom - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotHeight;

  const out = [];
  out.push(`<text x="${width / 2}" y="${y0 + 20}" font-size="15" font-weight="bold" text-anchor="middle">${escape(title)}</text>`);

  // Legend, three per row.
  shown.forEach((s, i) => {
    const x = LEFT + (i % 3) * Math.max(230, (width - LEFT - RIGHT) / 3);
    const ly = y0 + 36 + Math.floor(i / 3) * 22;
    out.push(`<rect x="${x}" y="${ly}" width="14" height="14" fill="${COLORS[s.id] || '#333'}"/>`);
    out.push(`<text x="${x + 20}" y="${ly + 12}" font-size="12">${escape(s.label)}</text>`);
  });

  // Grid: every decade (labelled), 2× and 5× faint.
  for (let decade = lo; decade <= hi; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v > hi) break;
      const gy = y(v).toFixed(1);
      out.push(`<line x1="${LEFT}" x2="${width - RIGHT}" y1="${gy}" y2="${gy}" stroke="${m === 1 ? '#bbb' : '#eee'}"/>`);
      if (m === 1 || lo * 100 >= hi) out.push(`<text x="${LEFT - 8}" y="${Number(gy) + 4}" font-size="11" text-anchor="end">${short(v)}</text>`);
    }
  }
  out.push(`<text transform="translate(22 ${top + plotHeight / 2}) rotate(-90)" font-size="12" text-anchor="middle">ops/s (sum over workers, log scale)</text>`);
  out.push(`<line x1="${LEFT}" x2="${LEFT}" y1="${top}" y2="${bottom}" stroke="#333"/>`);
  out.push(`<line x1="${LEFT}" x2="${width - RIGHT}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`);

  combos.forEach((combo, g) => {
    const gx = LEFT + g * groupWidth + (groupWidth - shown.length * BAR) / 2;
    shown.forEach((s, i) => {
      const run = runs.find((r) => r.system === s.id && r.workers === combo.workers && r.depth === combo.depth);
      if (!run || !(run.opsPerSec > 0)) return;
      const x = gx + i * BAR;
      const barTop = y(run.opsPerSec);
      out.push(
        `<rect x="${x + 1}" y="${barTop.toFixed(1)}" width="${BAR - 2}" height="${(bottom - barTop).toFixed(1)}" fill="${COLORS[s.id] || '#333'}"><title>${escape(`${s.label}: ${Math.round(run.opsPerSec)} ops/s`)}</title></rect>`,
      );
      out.push(`<text transform="translate(${x + BAR / 2 + 4} ${(barTop - 4).toFixed(1)}) rotate(-90)" font-size="10" fill="#222">${short(run.opsPerSec)}</text>`);
    });
    const cx = gx + (shown.length * BAR) / 2;
    const label = `${combo.workers} worker${combo.workers > 1 ? 's' : ''} × ${combo.depth} in flight`;
    out.push(`<text x="${cx}" y="${bottom + 20}" font-size="12" text-anchor="middle">${escape(label)}</text>`);
  });
  let height = bottom + 30 - y0;
  if (shown.some((s) => s.inProcess)) {
    out.push(
      `<text x="${width / 2}" y="${bottom + 44}" font-size="11" fill="#444" text-anchor="middle">The in-process row has no workers: the primary runs the load itself (shown in the 1-worker groups).</text>`,
    );
    height += 20;
  }
  return { height, out };
}

const BAR = 22;
const GROUP_GAP = 34;
const LEFT = 90;
const RIGHT = 30;

/** A group's bars plus a gap, and never narrower than its label ("2 workers × 64 in flight"). */
function groupMinWidth(systemCount) {
  return Math.max(systemCount * BAR + GROUP_GAP, 175);
}

function panelWidth(runs, systems) {
  const combos = new Set(runs.map((r) => `${r.workers}x${r.depth}`)).size;
  const shown = systems.filter((s) => runs.some((r) => r.system === s.id)).length;
  return LEFT + combos * groupMinWidth(shown) + RIGHT;
}

/**
 * panels: [{ title, runs }] (ok runs of one workload each), stacked top to
 * bottom under one subtitle; systems: [{ id, label }] in legend order.
 */
function throughputChart({ panels, systems, subtitle }) {
  // 880 px at least: three legend entries per row, the longest ("classic process.send (examples/classic)") included.
  const width = Math.max(880, ...panels.map((p) => panelWidth(p.runs, systems)));
  const body = [];
  let y0 = 56;
  for (const p of panels) {
    const { height, out } = panel({ runs: p.runs, systems, title: p.title, width, y0 });
    body.push(...out);
    y0 += height + 24;
  }
  const height = y0;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="26" font-size="17" font-weight="bold" text-anchor="middle">cluster-shm and its peers: throughput by workers and requests in flight</text>`);
  out.push(`<text x="${width / 2}" y="46" font-size="12" fill="#444" text-anchor="middle">${escape(subtitle)}</text>`);
  out.push(...body);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

module.exports = { throughputChart };

'use strict';

/**
 * A hand-written SVG chart: grouped bars of throughput, one group per
 * (workers × in-flight) combination, one bar per system, on a log scale (the
 * systems differ by orders of magnitude, which a linear scale would flatten).
 */

const COLORS = {
  'cluster-shm': '#1f77b4',
  'cluster-shm-inprocess': '#9ecae1',
  classic: '#7f7f7f',
  memored: '#bcbd22',
  'lru-clusters': '#9467bd',
  ioredis: '#d62728',
  'ioredis-autopipeline': '#ff9896',
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
 * runs: ok runs of one workload; systems: [{ id, label }] in legend order.
 */
function throughputChart({ runs, systems, title, subtitle }) {
  const combos = [...new Map(runs.map((r) => [`${r.workers}x${r.depth}`, { workers: r.workers, depth: r.depth }])).values()].sort(
    (a, b) => a.workers - b.workers || a.depth - b.depth,
  );
  const shown = systems.filter((s) => runs.some((r) => r.system === s.id));
  const bar = 22;
  const groupGap = 34;
  const groupWidth = shown.length * bar + groupGap;
  const left = 90;
  const right = 30;
  const legendRows = Math.ceil(shown.length / 3);
  const top = 70 + legendRows * 22;
  const plotHeight = 340;
  const bottom = top + plotHeight;
  const width = Math.max(760, left + combos.length * groupWidth + right);
  const height = bottom + 70;

  const values = runs.map((r) => r.opsPerSec).filter((v) => v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...values)));
  let hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  if (hi <= lo) hi = lo * 10;
  const y = (v) => bottom - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotHeight;

  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="${width / 2}" y="26" font-size="17" font-weight="bold" text-anchor="middle">${escape(title)}</text>`);
  out.push(`<text x="${width / 2}" y="46" font-size="12" fill="#444" text-anchor="middle">${escape(subtitle)}</text>`);

  // Legend, three per row.
  shown.forEach((s, i) => {
    const x = left + (i % 3) * Math.max(230, (width - left - right) / 3);
    const ly = 62 + Math.floor(i / 3) * 22;
    out.push(`<rect x="${x}" y="${ly}" width="14" height="14" fill="${COLORS[s.id] || '#333'}"/>`);
    out.push(`<text x="${x + 20}" y="${ly + 12}" font-size="12">${escape(s.label)}</text>`);
  });

  // Grid: every decade (labelled), 2× and 5× faint.
  for (let decade = lo; decade <= hi; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v > hi) break;
      const gy = y(v).toFixed(1);
      out.push(`<line x1="${left}" x2="${width - right}" y1="${gy}" y2="${gy}" stroke="${m === 1 ? '#bbb' : '#eee'}"/>`);
      if (m === 1 || lo * 100 >= hi) out.push(`<text x="${left - 8}" y="${Number(gy) + 4}" font-size="11" text-anchor="end">${short(v)}</text>`);
    }
  }
  out.push(`<text transform="translate(22 ${top + plotHeight / 2}) rotate(-90)" font-size="12" text-anchor="middle">ops/s (sum over workers, log scale)</text>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#333"/>`);
  out.push(`<line x1="${left}" x2="${width - right}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`);

  combos.forEach((combo, g) => {
    const gx = left + groupGap / 2 + g * groupWidth;
    shown.forEach((s, i) => {
      const run = runs.find((r) => r.system === s.id && r.workers === combo.workers && r.depth === combo.depth);
      if (!run || !(run.opsPerSec > 0)) return;
      const x = gx + i * bar;
      const top = y(run.opsPerSec);
      out.push(
        `<rect x="${x + 1}" y="${top.toFixed(1)}" width="${bar - 2}" height="${(bottom - top).toFixed(1)}" fill="${COLORS[s.id] || '#333'}"><title>${escape(`${s.label}: ${Math.round(run.opsPerSec)} ops/s`)}</title></rect>`,
      );
      out.push(`<text transform="translate(${x + bar / 2 + 4} ${(top - 4).toFixed(1)}) rotate(-90)" font-size="10" fill="#222">${short(run.opsPerSec)}</text>`);
    });
    const cx = gx + (shown.length * bar) / 2;
    const label = `${combo.workers} worker${combo.workers > 1 ? 's' : ''} × ${combo.depth} in flight`;
    out.push(`<text x="${cx}" y="${bottom + 20}" font-size="12" text-anchor="middle">${escape(label)}</text>`);
  });
  out.push(
    `<text x="${width / 2}" y="${bottom + 50}" font-size="11" fill="#444" text-anchor="middle">The in-process row has no workers: the primary runs the load itself (shown in the 1-worker groups).</text>`,
  );
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

module.exports = { throughputChart };

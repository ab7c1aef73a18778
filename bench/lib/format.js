'use strict';

/** Number formatting and markdown tables. */

function int(n) {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

/** Microseconds from nanoseconds: one decimal below 100 µs, whole above. */
function micros(ns) {
  if (!Number.isFinite(ns)) return '—';
  const us = ns / 1000;
  return us < 100 ? us.toFixed(1) : int(us);
}

function bytes(n) {
  if (!Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (Math.abs(n) >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (Math.abs(n) >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

function ratio(value, base) {
  if (!Number.isFinite(value) || !Number.isFinite(base) || base === 0) return '—';
  const r = value / base;
  return `${r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

/** A near cache's hit rate ({ hits, misses }) as a percentage, one decimal. */
function hitRate({ hits, misses }) {
  const total = hits + misses;
  return total > 0 ? `${((hits / total) * 100).toFixed(1)} %` : '—';
}

/** A markdown table; `align` per column: 'l' or 'r'. */
function table(headers, rows, align = headers.map(() => 'l')) {
  const cells = [headers, ...rows].map((row) => row.map((c) => String(c)));
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((row) => row[i].length)));
  const pad = (text, i) => (align[i] === 'r' ? text.padStart(widths[i]) : text.padEnd(widths[i]));
  const line = (row) => `| ${row.map(pad).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (align[i] === 'r' ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join('\n');
}

module.exports = { int, micros, bytes, ratio, hitRate, table };

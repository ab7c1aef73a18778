'use strict';

/**
 * A log-linear latency histogram (the HDR idea, without the dependency).
 *
 * Each power of two is split into SUB linear buckets, so a recorded value is
 * known to within 1/SUB of itself (< 0.8 %), whatever its magnitude. Workers
 * send their histograms to the primary, which adds the counts: percentiles
 * of the merged histogram are the percentiles of all samples, which averaging
 * per-worker percentiles would not give.
 */

const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // 128 buckets per power of two
const MAX_EXP = 48; // 2^48 ns is ~3 days: nothing a benchmark records

class Histogram {
  constructor() {
    this.counts = new Float64Array((MAX_EXP + 1) * SUB);
    this.total = 0;
    this.sum = 0;
    this.max = 0;
  }

  /** Records one value (nanoseconds, a Number). */
  record(value) {
    const v = value < 1 ? 1 : value;
    let exp = Math.floor(Math.log2(v));
    if (exp > MAX_EXP) exp = MAX_EXP;
    let sub = Math.floor((v / 2 ** exp - 1) * SUB);
    if (sub >= SUB) sub = SUB - 1; // float rounding at the top of a power of two
    this.counts[exp * SUB + sub] += 1;
    this.total += 1;
    this.sum += value;
    if (value > this.max) this.max = value;
  }

  /** Adds another histogram (or its toJSON form) into this one. */
  merge(other) {
    const { buckets, total, sum, max } = other instanceof Histogram ? other.toJSON() : other;
    for (const [index, count] of buckets) this.counts[index] += count;
    this.total += total;
    this.sum += sum;
    if (max > this.max) this.max = max;
    return this;
  }

  /** The value at quantile q (0..1): the middle of the bucket holding it. */
  quantile(q) {
    if (this.total === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let index = 0; index < this.counts.length; index++) {
      seen += this.counts[index];
      if (seen >= rank) {
        const exp = Math.floor(index / SUB);
        const sub = index % SUB;
        const low = 2 ** exp * (1 + sub / SUB);
        const high = 2 ** exp * (1 + (sub + 1) / SUB);
        return Math.min((low + high) / 2, this.max);
      }
    }
    return this.max;
  }

  mean() {
    return this.total === 0 ? NaN : this.sum / this.total;
  }

  /** Sparse form for IPC: only non-empty buckets travel. */
  toJSON() {
    const buckets = [];
    for (let index = 0; index < this.counts.length; index++) {
      if (this.counts[index] !== 0) buckets.push([index, this.counts[index]]);
    }
    return { buckets, total: this.total, sum: this.sum, max: this.max };
  }

  static from(json) {
    return new Histogram().merge(json);
  }
}

module.exports = { Histogram };

// Summary statistics of repeated measurements: median, p95 (nearest rank), min, max.

export function quantile(sorted, q) {
  if (!sorted.length) return null;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1];
}

export function summary(samples, digits = 2) {
  const xs = samples.filter((x) => Number.isFinite(x)).slice().sort((a, b) => a - b);
  if (!xs.length) throw new Error('no samples');
  const r = (x) => (x === null ? null : Number(x.toFixed(digits)));
  return {
    n: xs.length,
    median: r(quantile(xs, 0.5)),
    p95: r(quantile(xs, 0.95)),
    min: r(xs[0]),
    max: r(xs[xs.length - 1]),
  };
}

/** Compact form for the table: "median (min–max)". */
export function fmt(s, unit = '', digits = 1) {
  if (!s) return '—';
  const f = (x) => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(digits));
  return s.n > 1 ? `${f(s.median)}${unit} (${f(s.min)}–${f(s.max)})` : `${f(s.median)}${unit}`;
}

// A hand-written SVG of the scaling series: P2 throughput (ours vs plain IndexedDB), P3 p95
// latencies, P7 load-to-ready and P8 memory, each against the number of TEIs, with the targets
// dashed.

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function panel({ x0, y0, w, h, title, sizes, series, unit, targetLines = [] }) {
  const all = series.flatMap((s) => s.points.map((p) => p[1])).concat(targetLines.map((t) => t.value)).filter(Number.isFinite);
  const yMax = niceMax(Math.max(1, ...all) * 1.1);
  const xMin = Math.min(...sizes);
  const xMax = Math.max(...sizes);
  const px = (x) => x0 + 50 + (xMax === xMin ? (w - 70) / 2 : ((x - xMin) / (xMax - xMin)) * (w - 70));
  const py = (y) => y0 + h - 40 - (y / yMax) * (h - 75);
  const out = [];
  out.push(`<text x="${x0 + w / 2}" y="${y0 + 18}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  out.push(`<line x1="${x0 + 50}" y1="${py(0)}" x2="${x0 + w - 20}" y2="${py(0)}" stroke="#333"/>`);
  out.push(`<line x1="${x0 + 50}" y1="${py(0)}" x2="${x0 + 50}" y2="${py(yMax)}" stroke="#333"/>`);
  for (let i = 0; i <= 4; i++) {
    const v = (yMax / 4) * i;
    out.push(`<line x1="${x0 + 46}" y1="${py(v)}" x2="${x0 + w - 20}" y2="${py(v)}" stroke="#ddd"/>`);
    out.push(`<text x="${x0 + 44}" y="${py(v) + 4}" text-anchor="end" font-size="10">${esc(short(v))}</text>`);
  }
  for (const s of sizes) {
    out.push(`<text x="${px(s)}" y="${py(0) + 15}" text-anchor="middle" font-size="10">${esc(short(s))}</text>`);
  }
  out.push(`<text x="${x0 + w / 2 + 15}" y="${y0 + h - 8}" text-anchor="middle" font-size="11">TEIs (${esc(unit)})</text>`);
  for (const t of targetLines) {
    out.push(`<line x1="${x0 + 50}" y1="${py(t.value)}" x2="${x0 + w - 20}" y2="${py(t.value)}" stroke="${t.color}" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${x0 + w - 22}" y="${py(t.value) - 3}" text-anchor="end" font-size="10" fill="${t.color}">${esc(t.label)}</text>`);
  }
  let ly = y0 + 34;
  for (const s of series) {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    if (pts.length) {
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${pts.map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join(' ')}"/>`);
      for (const p of pts) out.push(`<circle cx="${px(p[0]).toFixed(1)}" cy="${py(p[1]).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(`${s.label}: ${p[1]} ${unit} at ${p[0]} TEIs`)}</title></circle>`);
    }
    out.push(`<rect x="${x0 + 60}" y="${ly - 8}" width="10" height="10" fill="${s.color}"/><text x="${x0 + 75}" y="${ly + 1}" font-size="11">${esc(s.label)}</text>`);
    ly += 15;
  }
  return out.join('\n');
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function short(v) {
  if (v >= 1000) return `${Number((v / 1000).toFixed(1))}k`;
  return `${Number(v.toFixed(v < 10 ? 1 : 0))}`;
}

export function scalingSvg(results, sizes) {
  const f = results.figures;
  const pts = (get) => sizes.map((s) => [s, get(s)]);
  const mb = (bytes) => (Number.isFinite(bytes) ? Number((bytes / 1048576).toFixed(1)) : undefined);
  const W = 360;
  const H = 300;
  const panels = [
    panel({
      x0: 0, y0: 30, w: W, h: H, title: 'P2 download + store', sizes, unit: 'TEI/s',
      series: [
        { label: 'tracker-offline (encrypted)', color: '#1f77b4', points: pts((s) => f.P2[s]?.oursTeisPerSecond.median) },
        { label: 'plain IndexedDB (same pages)', color: '#ff7f0e', points: pts((s) => f.P2[s]?.plainTeisPerSecond.median) },
      ],
    }),
    panel({
      x0: W, y0: 30, w: W, h: H, title: 'P3 offline reads, p95', sizes, unit: 'ms',
      series: [
        { label: 'query page, LIKE filter', color: '#2ca02c', points: pts((s) => f.P3[s]?.gridLikeMs.p95) },
        { label: 'working list page', color: '#9467bd', points: pts((s) => f.P3[s]?.workingListMs.p95) },
        { label: 'dashboard (TEI fields=*)', color: '#d62728', points: pts((s) => f.P3[s]?.dashboardMs.p95) },
      ],
      targetLines: [{ value: 50, label: 'target 50 ms', color: '#2ca02c' }, { value: 20, label: 'target 20 ms', color: '#d62728' }],
    }),
    panel({
      x0: 2 * W, y0: 30, w: W, h: H, title: 'P7 offline load to ready', sizes, unit: 'ms',
      series: [
        { label: 'ready minus KDF (median)', color: '#1f77b4', points: pts((s) => f.P7[s]?.readyMinusKdfMs.median) },
        { label: 'ready incl. KDF (median)', color: '#7f7f7f', points: pts((s) => f.P7[s]?.readyMs.median) },
      ],
      targetLines: [{ value: 1000, label: 'target 1 s', color: '#1f77b4' }],
    }),
    panel({
      x0: 3 * W, y0: 30, w: W, h: H, title: 'P8 memory, page + worker', sizes, unit: 'MB',
      series: [
        { label: 'after an offline day', color: '#d62728', points: pts((s) => mb(f.P8?.[s]?.afterDay.totalBytes)) },
        { label: 'after unlock', color: '#1f77b4', points: pts((s) => mb(f.P8?.[s]?.afterUnlock.totalBytes)) },
        { label: 'raw copy', color: '#7f7f7f', points: pts((s) => mb(f.P8?.[s]?.rawBytes)) },
        { label: 'target: 3x the raw copy', color: '#bcbd22', points: pts((s) => mb(f.P8?.[s] && 3 * f.P8[s].rawBytes)) },
      ],
    }),
  ];
  const title = `tracker-offline scaling — ${results.date.slice(0, 10)} — ${results.machine.cpu} (${results.machine.cores} cores) — ${results.machine.browser ?? ''}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${4 * W}" height="${H + 40}" viewBox="0 0 ${4 * W} ${H + 40}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="8" y="18" font-size="12">${esc(title)}</text>
${panels.join('\n')}
</svg>
`;
}

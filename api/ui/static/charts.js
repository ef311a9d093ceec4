// A small line chart drawn by hand on a <canvas> (no chart library): a fixed time window,
// one or more series of [time_s, value] points, the y axis scaled to the highest value.
export class LineChart {
  constructor(canvas, series, windowS = 120) {
    this.canvas = canvas;
    this.series = series; // [{name, color-variable}]
    this.windowS = windowS;
    this.points = series.map(() => []);
  }

  add(t, values) {
    values.forEach((v, i) => { if (v !== null && Number.isFinite(v)) this.points[i].push([t, v]); });
    const cut = t - this.windowS;
    for (const p of this.points) while (p.length && p[0][0] < cut) p.shift();
    this.now = t;
    this.draw(t);
  }

  draw(now = this.now || Date.now() / 1000) {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth || 600, h = c.clientHeight || 160;
    if (c.width !== Math.round(w * dpr)) { c.width = Math.round(w * dpr); c.height = Math.round(h * dpr); }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue("--muted").trim(), border = css.getPropertyValue("--border").trim();
    let max = 0;
    for (const p of this.points) for (const [, v] of p) max = Math.max(max, v);
    max = niceMax(max);
    const left = 44, bottom = h - 18, top = 8, right = w - 6;
    g.strokeStyle = border; g.fillStyle = muted; g.font = "11px system-ui, sans-serif"; g.lineWidth = 1;
    for (let i = 0; i <= 2; i++) {
      const y = bottom - (bottom - top) * i / 2;
      g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
      g.fillText(fmt(max * i / 2), 2, y + 4);
    }
    g.fillText(`-${this.windowS}s`, left, h - 4);
    g.fillText("now", right - 22, h - 4);
    const x = (t) => left + (right - left) * (1 - (now - t) / this.windowS);
    const y = (v) => bottom - (bottom - top) * (max ? v / max : 0);
    this.series.forEach((s, i) => {
      const p = this.points[i];
      g.strokeStyle = css.getPropertyValue(s.color).trim(); g.lineWidth = 2;
      g.setLineDash(i ? [6, 4] : []); // a second series stays visible where it runs on the first
      g.beginPath();
      p.forEach(([t, v], j) => (j ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = g.strokeStyle;
      g.fillText(s.name + (p.length ? ` ${fmt(p[p.length - 1][1])}` : ""), left + 8 + i * 120, top + 10);
    });
  }
}

function niceMax(v) {
  if (v <= 0) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * e) return m * e;
  return 10 * e;
}

function fmt(v) {
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 10 || v === 0) return `${Math.round(v)}`;
  return v.toFixed(v >= 1 ? 1 : 2);
}

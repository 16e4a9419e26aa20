// Small SVG charts drawn by the console itself (no chart library to vendor or download):
// time series with threshold lines and a shaded band, and bars against level thresholds.
import { h } from "./api.js";
import { t } from "./i18n.js";

const W = 640, H = 240, M = { l: 52, r: 14, t: 26, b: 34 };

export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; lo -= 1; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmtTime(ms, span) {
  const d = new Date(ms);
  const p = (n) => String(n).padStart(2, "0");
  return span > 8 * 86400e3 ? `${p(d.getMonth() + 1)}-${p(d.getDate())}`
    : `${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

function fmt(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : +v.toPrecision(3) + "";
}

// Consecutive items for which ok(item) holds, as separate arrays.
function runs(items, ok) {
  const out = [];
  let cur = [];
  for (const it of items) {
    if (ok(it)) cur.push(it);
    else if (cur.length) { out.push(cur); cur = []; }
  }
  if (cur.length) out.push(cur);
  return out;
}

export function timeChart({ title, series = [], hlines = [], band = null, vline = null,
  testid, xDomain = null }) {
  const pts = series.flatMap((s) => s.points).filter(([, v]) => Number.isFinite(v));
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": title, "data-testid": testid });
  svg.append(h("text", { x: M.l, y: 16, class: "chart-title" }, title));
  if (!pts.length) {
    svg.append(h("text", { x: W / 2, y: H / 2, class: "chart-empty" }, t("chart.no_data")));
    return svg;
  }
  const xs = pts.map(([x]) => x);
  for (const m of [band && band.from, band && band.to, vline && vline.x]) if (m) xs.push(m);
  let [x0, x1] = xDomain || [Math.min(...xs), Math.max(...xs)];
  if (x1 <= x0) x1 = x0 + 3600e3;
  const ys = pts.map(([, y]) => y).concat(hlines.map((l) => l.y));
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.1 || 1;
  y0 -= pad; y1 += pad;
  const X = (x) => M.l + (x - x0) / (x1 - x0) * (W - M.l - M.r);
  const Y = (y) => H - M.b - (y - y0) / (y1 - y0) * (H - M.t - M.b);
  const axes = h("g", { class: "axes" });
  for (const v of niceTicks(y0, y1, 4)) {
    axes.append(h("line", { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), class: "grid" }),
      h("text", { x: M.l - 6, y: Y(v) + 4, class: "tick y" }, fmt(v)));
  }
  const span = x1 - x0;
  for (let i = 0; i <= 4; i++) {
    const x = x0 + span * i / 4;
    axes.append(h("text", { x: X(x), y: H - M.b + 18, class: "tick x" }, fmtTime(x, span)));
  }
  svg.append(axes);
  if (band && band.from && band.to) {
    svg.append(h("rect", { class: `band ${band.cls || ""}`, x: X(band.from), y: M.t,
      width: Math.max(2, X(band.to) - X(band.from)), height: H - M.t - M.b,
      "data-testid": testid && `${testid}-band` }, h("title", {}, band.label)));
  }
  for (const l of hlines) {
    svg.append(h("line", { class: `hline ${l.cls || ""}`, x1: M.l, x2: W - M.r, y1: Y(l.y), y2: Y(l.y) }),
      h("text", { class: `hline-label ${l.cls || ""}`, x: W - M.r - 4, y: Y(l.y) - 4 }, l.label));
  }
  // Error bands (e.g. ±1.96 standard errors) under their lines, clipped to the plot: a
  // scale whose error dwarfs the signal must not squash the others.
  const clampY = (y) => Y(Math.min(y1, Math.max(y0, y)));
  for (const s of series.filter((x) => x.band)) {
    for (const run of runs(s.band.filter(([x]) => x >= x0 && x <= x1), ([, lo, hi]) => Number.isFinite(lo) && Number.isFinite(hi))) {
      const up = run.map(([x, , hi], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${clampY(hi).toFixed(1)}`);
      const down = run.slice().reverse().map(([x, lo]) => `L${X(x).toFixed(1)},${clampY(lo).toFixed(1)}`);
      svg.append(h("path", { class: `err-band ${s.cls || ""}`, d: `${up.join("")}${down.join("")}Z`,
        "data-testid": testid && `${testid}-err` }, h("title", {}, s.bandLabel || "")));
    }
  }
  for (const s of series) {
    // A missing value breaks the line (an hour the engine had too few readings for).
    const d = runs(s.points, ([, v]) => Number.isFinite(v)).map((run) => run
      .map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("")).join("");
    svg.append(h("path", { class: `series ${s.cls || ""}`, d, "data-scale": s.scale }, h("title", {}, s.label)));
  }
  const named = series.filter((s) => s.legend);
  named.forEach((s, i) => {
    const x = W - M.r - (named.length - i) * 92;
    svg.append(h("g", { class: "chart-legend" },
      h("line", { class: `series ${s.cls || ""}`, x1: x, x2: x + 18, y1: 12, y2: 12 }),
      h("text", { x: x + 22, y: 16, class: "legend-label" }, s.legend)));
  });
  if (vline && vline.x) {
    svg.append(h("line", { class: `vline ${vline.cls || ""}`, x1: X(vline.x), x2: X(vline.x),
      y1: M.t, y2: H - M.b, "data-testid": testid && `${testid}-forecast` }),
    h("text", { class: "vline-label", x: X(vline.x) - 4, y: M.t + 12 }, vline.label));
  }
  return svg;
}

// Rain accumulations per window against the table's four level thresholds.
export function thresholdBars({ title, windows, testid }) {
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": title, "data-testid": testid });
  svg.append(h("text", { x: M.l, y: 16, class: "chart-title" }, title));
  const rows = windows.filter((w) => Number.isFinite(w.value) || w.thresholds.some(Number.isFinite));
  if (!rows.length) {
    svg.append(h("text", { x: W / 2, y: H / 2, class: "chart-empty" }, t("chart.no_data")));
    return svg;
  }
  const top = Math.max(1, ...rows.flatMap((w) => [w.value || 0, ...w.thresholds.filter(Number.isFinite)])) * 1.1;
  const Y = (y) => H - M.b - y / top * (H - M.t - M.b);
  for (const v of niceTicks(0, top, 4)) {
    svg.append(h("line", { x1: M.l, x2: W - M.r, y1: Y(v), y2: Y(v), class: "grid" }),
      h("text", { x: M.l - 6, y: Y(v) + 4, class: "tick y" }, fmt(v)));
  }
  const slot = (W - M.l - M.r) / rows.length;
  const colours = ["blue", "yellow", "orange", "red"];
  rows.forEach((w, i) => {
    const x = M.l + slot * i + slot * 0.2, bw = slot * 0.6;
    const v = Number.isFinite(w.value) ? w.value : 0;
    const lv = w.thresholds.reduce((acc, th, k) => (Number.isFinite(th) && v >= th ? k + 1 : acc), 0);
    svg.append(h("rect", { class: `bar level-${["none", ...colours][lv]}`, x, y: Y(v), width: bw,
      height: Math.max(0, Y(0) - Y(v)) }, h("title", {}, `${w.window}: ${fmt(v)} mm`)));
    w.thresholds.forEach((th, k) => {
      if (!Number.isFinite(th)) return;
      svg.append(h("line", { class: `threshold level-${colours[k]}`, x1: x - 6, x2: x + bw + 6,
        y1: Y(th), y2: Y(th) }, h("title", {}, `${t("level." + colours[k])} ${fmt(th)} mm`)));
    });
    svg.append(h("text", { x: x + bw / 2, y: H - M.b + 18, class: "tick x" }, w.window),
      h("text", { x: x + bw / 2, y: Y(v) - 4, class: "bar-value" }, fmt(v)));
  });
  return svg;
}

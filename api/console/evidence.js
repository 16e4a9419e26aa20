// Charts of an alert's evidence, one per channel the engine cited: displacement with its
// velocity and the forecast failure time with its band, rain accumulations against the
// table's thresholds, water level against its stages, other values against thresholds.
// Series come from the readings endpoint; thresholds and forecasts from the evidence.
import { api, h } from "./api.js";
import { timeChart, thresholdBars } from "./charts.js";
import { currentLang, t, time } from "./i18n.js";

const HOUR = 3600e3, DAY = 86400e3;

async function readings(device, channel, from, to, bucket, agg) {
  const q = new URLSearchParams({ channel, from: new Date(from).toISOString(),
    to: new Date(to).toISOString(), bucket, agg, limit: "5000" });
  const r = await api(`/api/devices/${encodeURIComponent(device)}/readings?${q}`);
  return r.readings.filter((x) => x.value !== null)
    .map((x) => [new Date(x.ts).getTime(), x.value]);
}

// The engine's velocities per scale with standard errors, hour by hour
// (GET /api/devices/{id}/velocity: the engine's own code over the stored readings).
async function velocities(device, channel, from, to) {
  const q = new URLSearchParams({ channel, from: new Date(from).toISOString(),
    to: new Date(to).toISOString() });
  return api(`/api/devices/${encodeURIComponent(device)}/velocity?${q}`);
}

// Drawn: the scales the engine had enough hours for; the shortest is the noisiest, so the
// band is the 95 % interval of each (±1.96 standard errors).
const Z95 = 1.96;
const VELOCITY_MAX_DAYS = 30;  // the endpoint replays at most 31 days
export function velocitySeries(body) {
  return body.scales.map((s) => {
    const pts = s.points.map((p) => [new Date(p.ts).getTime(), p.mm_per_day, p.se]);
    return { scale: s.scale, cls: `vel vel-${s.scale}`, label: `${s.scale} mm/day`, legend: s.scale,
      points: pts.map(([x, v]) => [x, v]),
      band: pts.map(([x, v, e]) => (Number.isFinite(v) && Number.isFinite(e)
        ? [x, v - Z95 * e, v + Z95 * e] : [x, NaN, NaN])),
      bandLabel: `${s.scale} ±${Z95}σ` };
  }).filter((s) => s.points.some(([, v]) => Number.isFinite(v)));
}

// The evidence's times are ISO 8601 to the minute ("2026-07-03T06:10Z"), which Date parses.
function parseTime(iso) {
  const v = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(v) ? v : null;
}

function summary(ch) {
  const text = currentLang() === "zh" ? ch.summary_zh : ch.summary_en;
  return text ? h("p", { class: "summary", "data-testid": "evidence-summary" }, text) : null;
}

async function displacement(ch, device, channel, end) {
  const fc = ch.forecast;
  const from = Math.min(end - 3 * DAY, (parseTime(ch.data_time) || end) - DAY);
  const to = fc ? Math.max(end, parseTime(fc.upper)) + 2 * HOUR : end;
  const [series, vbody] = await Promise.all([readings(device, channel, from, end, "30m", "avg"),
    velocities(device, channel, Math.max(from, end - VELOCITY_MAX_DAYS * DAY), end)]);
  const band = fc ? { from: parseTime(fc.lower), to: parseTime(fc.upper), cls: "forecast",
    label: `${t("chart.band")} ${time(fc.lower)} – ${time(fc.upper)}` } : null;
  const vline = fc ? { x: parseTime(fc.time), cls: "forecast",
    label: `${t("chart.forecast")} ${time(fc.time)}` } : null;
  const vel = velocitySeries(vbody);
  const hl = Number.isFinite(ch.reference_rate_mm_per_day)
    ? [{ y: ch.reference_rate_mm_per_day, cls: "reference",
      label: currentLang() === "zh" ? "参考速率" : "reference rate" }] : [];
  return [
    timeChart({ title: `${t("chart.displacement")} ${device} ${channel} (mm)`, testid: "chart-displacement",
      series: [{ points: series, cls: "disp", label: channel }], band, vline, xDomain: [from, to] }),
    timeChart({ title: `${t("chart.velocity")} ${device}`, testid: "chart-velocity",
      series: vel, hlines: hl, band, vline, xDomain: [from, to] }),
    h("p", { class: "chart-note muted", "data-testid": "velocity-note" }, t("chart.engine_band")),
  ];
}

async function rainfall(ch, device, channel, end) {
  const windows = Object.entries(ch.accumulations_mm || {}).map(([w, v]) => ({
    window: w, value: v, thresholds: ((ch.thresholds_mm || {})[w] || []).map((x) => (x === null ? NaN : x)),
  }));
  const series = await readings(device, channel, end - 3 * DAY, end, "1h", "sum");
  return [
    thresholdBars({ title: `${t("chart.accum")} ${device}`, windows, testid: "chart-rain-accum" }),
    timeChart({ title: `${t("chart.rain")} ${device}`, testid: "chart-rain",
      series: [{ points: series, cls: "rain", label: "mm/h" }] }),
  ];
}

async function waterLevel(ch, device, channel, end) {
  const stages = ch.stages_m || {};
  const hlines = ["warning", "guaranteed", "historical_max"].filter((k) => Number.isFinite(stages[k]))
    .map((k) => ({ y: stages[k], cls: `stage-${k}`, label: `${t("chart." + k)} ${stages[k]} m` }));
  const series = await readings(device, channel, end - 2 * DAY, end, "10m", "avg");
  return [timeChart({ title: `${t("chart.level")} ${device}`, testid: "chart-water-level",
    series: [{ points: series, cls: "level", label: channel }], hlines })];
}

async function other(ch, device, channel, end) {
  const hlines = (ch.thresholds || []).map((y, i) => (Number.isFinite(y)
    ? { y, cls: `level-${["blue", "yellow", "orange", "red"][i]}`, label: t("level." + ["blue", "yellow", "orange", "red"][i]) } : null))
    .filter(Boolean);
  const series = await readings(device, channel, end - 2 * DAY, end, "10m", "avg");
  return [timeChart({ title: `${t("chart.value")} ${device} ${channel}`, testid: "chart-value",
    series: [{ points: series, cls: "value", label: channel }], hlines })];
}

const DRAW = { displacement, rainfall, water_level: waterLevel };

// The latest evidence of each channel over the alert's events.
export function latestChannels(events) {
  const seen = new Map();
  for (const e of events) {
    for (const ch of (e.evidence && e.evidence.channels) || []) seen.set(ch.channel_id, ch);
  }
  return [...seen.values()];
}

// Series end now for an alert still open (the officer watches what happens next), else at the
// alert's last data.
export async function evidenceCharts(alert) {
  const out = [];
  const last = alert.status === "resolved" ? parseTime(alert.last_data_time) : Date.now();
  for (const ch of latestChannels(alert.events)) {
    const [, channel] = (ch.sensor || "").split(".");
    const end = Math.max(parseTime(ch.data_time) || 0, last || 0) || Date.now();
    const draw = DRAW[ch.method] || other;
    const box = h("div", { class: "evidence", "data-testid": `evidence-${ch.method}` },
      h("h4", {}, `${ch.device_id} · ${ch.sensor} · ${t("level." + ["none", "blue", "yellow", "orange", "red"][ch.level || 0])}`),
      summary(ch));
    try {
      box.append(...(await draw(ch, ch.device_id, channel, end)));
    } catch (err) {
      box.append(h("p", { class: "error" }, `${t("error")}: ${err.message}`));
    }
    out.push(box);
  }
  return out;
}

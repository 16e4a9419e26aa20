// The hazard-point map: polygons from the API's FeatureCollection drawn in SVG over a plain
// background, in a simple equirectangular projection (longitudes shrunk by cos(latitude)),
// which is true enough over a county. No tiles: it works on a closed network. Each point
// also gets a dot at its centre, so a small slope stays visible when a whole city is shown.
import { h } from "./api.js";
import { t } from "./i18n.js";

const W = 1000, H = 620;
const LEVELS = ["none", "blue", "yellow", "orange", "red"];

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates];
  if (geometry.type === "MultiPolygon") return geometry.coordinates;
  if (geometry.type === "Point") return [[[geometry.coordinates]]];
  return [];
}

function bounds(points) {
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [x, y] of points) {
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
  }
  // A single point or a tiny area: show at least ~1 km around it.
  const pad = Math.max((x1 - x0) * 0.08, (y1 - y0) * 0.08, 0.005);
  return [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
}

// Fitted into a fixed W x H box (centred), so a long thin region does not make a thin map.
export function projection(points, height = H) {
  const [x0, y0, x1, y1] = bounds(points);
  const k = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const scale = Math.min(W / ((x1 - x0) * k), height / (y1 - y0));
  const xOff = (W - (x1 - x0) * k * scale) / 2;
  const yOff = (height - (y1 - y0) * scale) / 2;
  return {
    height,
    scale,
    xy: ([lon, lat]) => [xOff + (lon - x0) * k * scale, yOff + (y1 - lat) * scale],
  };
}

// Zoom (buttons, wheel) and pan (drag) by moving the viewBox; "fit" shows everything again.
function zoomable(svg, height) {
  let box = [0, 0, W, height];
  const set = () => svg.setAttribute("viewBox", box.map((v) => v.toFixed(1)).join(" "));
  const zoom = (f, cx = box[0] + box[2] / 2, cy = box[1] + box[3] / 2) => {
    const w = Math.min(W * 2, Math.max(W / 64, box[2] * f)), hh = w * height / W;
    box = [cx - (cx - box[0]) * w / box[2], cy - (cy - box[1]) * hh / box[3], w, hh];
    set();
  };
  const toSvg = (e) => {
    const r = svg.getBoundingClientRect();
    return [box[0] + (e.clientX - r.left) / r.width * box[2], box[1] + (e.clientY - r.top) / r.height * box[3]];
  };
  svg.addEventListener("wheel", (e) => { e.preventDefault(); zoom(e.deltaY < 0 ? 0.8 : 1.25, ...toSvg(e)); }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, box: [...box], moved: false }; });
  svg.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    const dx = (e.clientX - drag.x) / r.width * box[2], dy = (e.clientY - drag.y) / r.height * box[3];
    if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) > 4) drag.moved = true;
    if (drag.moved) { box = [drag.box[0] - dx, drag.box[1] - dy, box[2], box[3]]; set(); }
  });
  // A drag is not a click on the hazard under the pointer.
  svg.addEventListener("click", (e) => { if (drag && drag.moved) e.stopPropagation(); drag = null; }, true);
  svg.addEventListener("pointerup", () => { if (drag && !drag.moved) drag = null; });
  return h("div", { class: "map-tools" },
    h("button", { type: "button", title: "+", "data-testid": "zoom-in", onclick: () => zoom(0.5) }, "+"),
    h("button", { type: "button", title: "−", "data-testid": "zoom-out", onclick: () => zoom(2) }, "−"),
    h("button", { type: "button", title: "fit", "data-testid": "zoom-fit",
      onclick: () => { box = [0, 0, W, height]; set(); } }, "⤢"));
}

function centre(polys) {
  let [sx, sy, n] = [0, 0, 0];
  for (const poly of polys) for (const [x, y] of poly[0]) { sx += x; sy += y; n += 1; }
  return n ? [sx / n, sy / n] : null;
}

export function drawMap(container, collection, devices, { onSelect, selected } = {}) {
  const features = collection.features || [];
  const points = [];
  for (const f of features) for (const poly of rings(f.geometry)) points.push(...poly[0]);
  for (const d of devices) if (d.lon != null && d.lat != null) points.push([d.lon, d.lat]);
  container.replaceChildren();
  if (!points.length) {
    container.append(h("p", { class: "empty" }, t("map.empty")));
    return;
  }
  const proj = projection(points);
  const svg = h("svg", {
    class: "map", viewBox: `0 0 ${W} ${proj.height}`, role: "img",
    "aria-label": t("map.title"), "data-testid": "map",
  });
  svg.append(h("rect", { class: "map-bg", x: 0, y: 0, width: W, height: proj.height }));
  // Red on top: drawn last.
  const order = [...features].sort((a, b) =>
    LEVELS.indexOf(a.properties.level) - LEVELS.indexOf(b.properties.level));
  const dot = Math.max(6, Math.min(14, W / 90));
  for (const f of order) {
    const p = f.properties;
    const polys = rings(f.geometry);
    const d = polys.map((poly) => poly.map((ring) => "M" + ring.map((c) =>
      proj.xy(c).map((v) => v.toFixed(1)).join(",")).join("L") + "Z").join("")).join("");
    const c = centre(polys);
    const [cx, cy] = c ? proj.xy(c) : [0, 0];
    const g = h("g", {
      class: `hazard level-${p.level}${selected === f.id ? " selected" : ""}`,
      "data-testid": `hazard-${f.id}`, "data-level": p.level, tabindex: 0, role: "button",
      onclick: () => onSelect && onSelect(f.id, p.alert_id),
      onkeydown: (e) => { if (e.key === "Enter" && onSelect) onSelect(f.id, p.alert_id); },
    },
    h("title", {}, `${p.name || f.id} · ${t("level." + p.level)}`),
    h("path", { d, class: "area" }),
    h("circle", { cx: cx.toFixed(1), cy: cy.toFixed(1), r: dot, class: "dot" }));
    if (features.length <= 40) {
      g.append(h("text", { x: (cx + dot + 4).toFixed(1), y: (cy + 5).toFixed(1), class: "label" },
        p.name || f.id));
    }
    svg.append(g);
  }
  for (const dv of devices) {
    if (dv.lon == null || dv.lat == null) continue;
    const [x, y] = proj.xy([dv.lon, dv.lat]);
    const state = (dv.health && dv.health.state) || "unknown";
    svg.append(h("rect", {
      class: `device health-${state}`, x: (x - 5).toFixed(1), y: (y - 5).toFixed(1),
      width: 10, height: 10, "data-testid": `device-${dv.id}`,
    }, h("title", {}, `${dv.id} (${dv.kind}) · ${t("health." + state)}`)));
  }
  container.append(zoomable(svg, proj.height), svg, legend());
}

function legend() {
  return h("div", { class: "legend", "aria-label": t("map.legend") },
    ...LEVELS.slice(1).reverse().map((lv) =>
      h("span", { class: `key level-${lv}` }, h("i"), t("level." + lv))),
    h("span", { class: "key dev" }, h("i"), t("map.devices")));
}

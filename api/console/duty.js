// The duty-room view: the alert queue (by level, then age), the map of hazard points, the
// open alert's detail, the device health list; kept live by the server-sent event stream.
import { api, h } from "./api.js";
import { drillBadge, renderDetail } from "./detail.js";
import { drawMap } from "./map.js";
import { beep } from "./sound.js";
import { age, t, time } from "./i18n.js";

const LEVELS = ["none", "blue", "yellow", "orange", "red"];

export function byLevelAndAge(alerts) {
  return [...alerts].sort((a, b) => (a.status === "resolved") - (b.status === "resolved")
    || LEVELS.indexOf(b.level) - LEVELS.indexOf(a.level)
    || Date.parse(a.opened_at) - Date.parse(b.opened_at));
}

export class DutyView {
  constructor(root, user) {
    this.user = user;
    this.selected = null;
    this.hazard = null;
    this.queue = h("ol", { class: "queue", "data-testid": "queue" });
    this.map = h("div", { class: "map-box" });
    this.detail = h("div", { class: "detail-box", "data-testid": "detail-box" },
      h("p", { class: "empty" }, t("detail.none")));
    this.devices = h("div", { class: "devices", "data-testid": "devices" });
    this.tabs = h("nav", { class: "tabs" },
      h("button", { type: "button", class: "tab on", "data-testid": "tab-duty", onclick: () => this.tab("duty") }, t("nav.duty")),
      h("button", { type: "button", class: "tab", "data-testid": "tab-devices", onclick: () => this.tab("devices") }, t("nav.devices")));
    this.dutyPane = h("div", { class: "duty" },
      h("section", { class: "card queue-card" }, h("h2", {}, t("queue.title")), this.queue),
      h("section", { class: "card map-card" }, h("h2", {}, t("map.title")), this.map),
      this.detail);
    this.devicePane = h("section", { class: "card", hidden: true }, h("h2", {}, t("devices.title")), this.devices);
    root.replaceChildren(this.tabs, this.dutyPane, this.devicePane);
  }

  tab(name) {
    const duty = name === "duty";
    this.dutyPane.hidden = !duty;
    this.devicePane.hidden = duty;
    const [a, b] = this.tabs.children;
    a.classList.toggle("on", duty);
    b.classList.toggle("on", !duty);
    if (!duty) this.loadDevices();
  }

  async refresh() {
    const [alerts, hazards, devices] = await Promise.all([
      api("/api/alerts?status=open&status=acknowledged&limit=500"),
      api("/api/hazards"), api("/api/devices")]);
    this.alerts = byLevelAndAge(alerts);
    this.hazards = hazards;
    this.deviceList = devices;
    this.drawQueue();
    drawMap(this.map, hazards, devices, { selected: this.hazard,
      onSelect: (hid, alertId) => {
        this.hazard = hid;
        const best = this.alerts.find((a) => a.target.id === hid);
        if (best || alertId) this.open((best && best.id) || alertId);
      } });
    document.body.dataset.mapReady = "1";
  }

  drawQueue() {
    this.queue.replaceChildren(...(this.alerts.length ? this.alerts.map((a) => h("li", {
      class: `item level-${a.level}${a.id === this.selected ? " selected" : ""}`,
      "data-testid": `alert-${a.id}`, "data-level": a.level, "data-status": a.status,
      "data-exercise": a.exercise || null,
      tabindex: 0, role: "button",
      onclick: () => this.open(a.id),
      onkeydown: (e) => { if (e.key === "Enter") this.open(a.id); },
    },
    h("span", { class: `badge level-${a.level}` }, t("level." + a.level)),
    h("span", { class: "what" }, drillBadge(a), h("b", {}, a.target.name || a.target.id), " ",
      h("span", { class: "muted" }, t("kind." + a.hazard_kind))),
    h("span", { class: `status status-${a.status}` }, t("status." + a.status)),
    h("time", { datetime: a.opened_at, title: time(a.opened_at) }, age(a.opened_at))))
      : [h("li", { class: "empty" }, t("queue.empty"))]));
  }

  async open(alertId) {
    this.selected = alertId;
    this.drawQueue();
    this.detail.dataset.ready = "";
    try {
      await renderDetail(this.detail, alertId, this.user, {
        onChanged: () => this.refresh().then(() => this.open(alertId)),
        onClose: () => { this.selected = null; this.detail.replaceChildren(h("p", { class: "empty" }, t("detail.none"))); this.drawQueue(); },
      });
    } catch (err) {
      this.detail.replaceChildren(h("p", { class: "error" }, `${t("error")}: ${err.message}`));
    }
    if (window.matchMedia("(max-width: 900px)").matches) this.detail.scrollIntoView({ block: "start" });
  }

  // One event of the stream: refresh what it touches; a new red/orange rings.
  async onEvent(change) {
    if (["opened", "raised"].includes(change.action) && ["red", "orange"].includes(change.level)) {
      beep(change.level);
      showBanner(`${change.exercise ? t("drill") + " " : ""}${t("banner.new")}: ${t("level." + change.level)} · ${change.target.name || change.target.id} · ${t("kind." + change.hazard_kind)}`);
    }
    clearTimeout(this.pending);
    this.pending = setTimeout(async () => {
      await this.refresh();
      if (this.selected === change.alert_id) await this.open(change.alert_id);
    }, 300);
  }

  async loadDevices() {
    const list = this.deviceList || await api("/api/devices");
    const since = new Date(Date.now() - 7 * 86400e3).toISOString();
    const letters = await Promise.all(list.slice(0, 60).map((d) =>
      api(`/api/deadletters?device=${encodeURIComponent(d.id)}&since=${encodeURIComponent(since)}&limit=100`)
        .then((r) => r.length).catch(() => null)));
    const rank = { silent: 0, offline: 1, late: 2, unknown: 3, ok: 4 };
    const rows = list.map((d, i) => ({ d, dead: letters[i] ?? null }))
      .sort((a, b) => (rank[a.d.health.state || "unknown"] - rank[b.d.health.state || "unknown"])
        || (a.d.health.battery_pct ?? 101) - (b.d.health.battery_pct ?? 101));
    this.devices.replaceChildren(rows.length ? h("table", { class: "grid wide" },
      h("thead", {}, h("tr", {}, ...["devices.id", "devices.kind", "devices.state", "devices.battery",
        "devices.last", "devices.problems", "devices.deadletters"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, ...rows.map(({ d, dead }) => {
        const state = d.health.state || "unknown";
        const low = d.health.battery_pct !== null && d.health.battery_pct !== undefined && d.health.battery_pct < 20;
        return h("tr", { "data-testid": `health-${d.id}`, "data-state": state },
          h("td", {}, d.id), h("td", {}, d.kind),
          h("td", {}, h("span", { class: `health health-${state}` }, t("health." + state))),
          h("td", { class: low ? "warn" : "" }, d.health.battery_pct == null ? "—" : `${d.health.battery_pct}%`),
          h("td", {}, time(d.health.last_reading_at)),
          h("td", {}, (d.health.problems || []).join("; ")),
          h("td", { class: dead ? "warn" : "" }, dead === null ? "—" : String(dead)));
      }))) : h("p", { class: "empty" }, t("devices.empty")));
  }
}

export function showBanner(text) {
  const el = document.getElementById("banner");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(showBanner.timer);
  showBanner.timer = setTimeout(() => { el.hidden = true; }, 20000);
}

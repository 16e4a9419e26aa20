// The monitor's phone view (群测群防员): my hazard points and their level, "I received the
// warning" for each unresolved alert, and a field report (kind, severity, note, photo).
import { api, h } from "./api.js";
import { drillBadge } from "./detail.js";
import { t, time } from "./i18n.js";

const KINDS = ["new_cracks", "cracks_widening", "bulging", "seepage", "turbid_water",
  "falling_rocks", "tilted_trees_or_poles", "unusual_sounds", "other"];
const SEVERITIES = ["minor", "moderate", "severe"];

function reportForm(point, onSent) {
  const msg = h("p", { class: "note", role: "status", "data-testid": "report-result" });
  const form = h("form", { class: "report", "data-testid": `report-${point.id}` },
    h("h4", {}, t("monitor.report")),
    h("label", {}, h("span", {}, t("monitor.kind")),
      h("select", { name: "kind", required: true }, ...KINDS.map((k) => h("option", { value: k }, t("report." + k))))),
    h("fieldset", { class: "severity" }, h("legend", {}, t("monitor.severity")),
      ...SEVERITIES.map((s, i) => h("label", { class: "radio" },
        h("input", { type: "radio", name: "severity", value: s, checked: i === 0 }), t("severity." + s)))),
    h("label", {}, h("span", {}, t("monitor.note")), h("textarea", { name: "note", rows: 3, maxlength: 2000 })),
    h("label", {}, h("span", {}, t("monitor.photo")),
      h("input", { type: "file", name: "photo", accept: "image/jpeg,image/png,image/webp", capture: "environment" })),
    h("button", { type: "submit", class: "primary" }, t("monitor.submit")), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const photo = data.get("photo");
    if (!photo || !photo.size) data.delete("photo");
    if (!String(data.get("note") || "").trim()) data.delete("note");
    msg.className = "note";
    msg.textContent = "…";
    try {
      const r = await api(`/api/hazards/${encodeURIComponent(point.id)}/reports`, { method: "POST", form: data });
      msg.textContent = `${t("monitor.sent")} (#${r.id})`;
      msg.dataset.reportId = r.id;
      form.reset();
      onSent && onSent(r);
    } catch (err) {
      msg.className = "note error";
      msg.textContent = `${t("error")}: ${err.message}`;
    }
  });
  return form;
}

function alertRow(a, refresh) {
  const done = a.received_at
    ? h("span", { class: "ok", "data-testid": `received-${a.id}` }, `${t("monitor.confirmed")} ${time(a.received_at)}`)
    : h("button", { type: "button", class: "primary", "data-testid": `confirm-${a.id}`, onclick: async (e) => {
      e.target.disabled = true;
      try { await api(`/api/alerts/${a.id}/receipt`, { method: "POST" }); } finally { refresh(); }
    } }, t("monitor.confirm"));
  return h("li", { class: `item level-${a.level}` },
    h("span", { class: `badge level-${a.level}` }, t("level." + a.level)),
    h("span", { class: "what" }, drillBadge(a), t("kind." + a.hazard_kind), " · ", time(a.last_data_time)), done);
}

export async function renderMonitor(root) {
  const points = await api("/api/me/hazards");
  const refresh = () => renderMonitor(root);
  root.replaceChildren(h("section", { class: "monitor", "data-testid": "monitor" },
    h("h2", {}, t("monitor.title")),
    points.length ? points.map((p) => h("article", { class: `card point level-${p.level}`, "data-testid": `point-${p.id}`, "data-level": p.level },
      h("header", {}, h("span", { class: `badge level-${p.level}` }, t("level." + p.level)),
        h("h3", {}, p.name || p.id)),
      p.alerts.length ? h("ul", { class: "plain alerts" }, ...p.alerts.map((a) => alertRow(a, refresh)))
        : h("p", { class: "muted" }, t("monitor.no_alert")),
      reportForm(p))) : h("p", { class: "empty" }, t("monitor.empty"))));
}

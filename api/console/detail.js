// One alert: what it is, the evidence as charts, who lives there and where they can go, the
// notifications sent, and the duty officer's acknowledge / resolve (with a reason).
import { api, h, hasPath } from "./api.js";
import { evidenceCharts } from "./evidence.js";
import { t, time } from "./i18n.js";

export const CAN_ACT = new Set(["admin", "duty_officer"]);

function badge(level) {
  return h("span", { class: `badge level-${level}`, "data-testid": "level" }, t("level." + level));
}

// A drill's alert (an exercise's) must never pass for a live warning: 【演练】 on it everywhere.
export function drillBadge(alert) {
  return alert.exercise ? h("span", { class: "badge drill", "data-testid": "drill",
    title: alert.exercise }, t("drill")) : null;
}

function section(title, ...body) {
  return h("section", { class: "sub" }, h("h3", {}, title), ...body);
}

function people(list, render, empty) {
  return list && list.length ? h("ul", { class: "plain" }, ...list.map(render)) : h("p", { class: "empty" }, empty);
}

function actions(alert, user, onChanged) {
  if (!CAN_ACT.has(user.role) || alert.status === "resolved") return null;
  const err = h("p", { class: "error", role: "alert" });
  const note = h("input", { name: "note", placeholder: t("detail.ack_note"), maxlength: 2000 });
  const reason = h("input", { name: "reason", placeholder: t("detail.reason"), maxlength: 2000 });
  const run = async (path, body) => {
    err.textContent = "";
    try {
      await api(`/api/alerts/${alert.id}/${path}`, { method: "POST", json: body });
      onChanged();
    } catch (e) {
      err.textContent = `${t("error")}: ${e.message}`;
    }
  };
  const ack = alert.status === "open" ? h("div", { class: "row" }, note,
    h("button", { type: "button", class: "primary", "data-testid": "ack",
      onclick: () => run("ack", { note: note.value.trim() || null }) }, t("detail.ack"))) : null;
  const resolve = h("div", { class: "row" }, reason,
    h("button", { type: "button", "data-testid": "resolve", onclick: () => {
      if (!reason.value.trim()) { err.textContent = t("detail.reason_missing"); return; }
      run("resolve", { reason: reason.value.trim() });
    } }, t("detail.resolve")));
  return h("div", { class: "actions" }, ack, resolve, err);
}

// Deliveries of this alert's warnings (GET /api/notifications?alert_id=), newest first:
// when, channel, to whom (masked as the API masks it), for what, and whether it arrived.
async function notifications(alertId) {
  if (!(await hasPath("/api/notifications"))) {
    return h("p", { class: "empty", "data-testid": "notifications" }, t("detail.no_notify_api"));
  }
  const rows = await api(`/api/notifications?alert_id=${alertId}&limit=200`);
  if (!rows.length) return h("p", { class: "empty", "data-testid": "notifications" }, t("detail.no_notifications"));
  return h("table", { class: "grid", "data-testid": "notifications" },
    h("thead", {}, h("tr", {}, ...["notify.at", "notify.channel", "notify.to", "notify.purpose",
      "notify.state"].map((k) => h("th", {}, t(k))))),
    h("tbody", {}, ...rows.map((r) => h("tr", { "data-state": r.state, "data-purpose": r.purpose },
      h("td", {}, time(r.accepted_at || r.created_at)),
      h("td", {}, t("channel." + r.channel)),
      h("td", {}, [r.recipient_name, r.masked_phone].filter(Boolean).join(" ") || r.recipient_id,
        h("span", { class: "muted" }, ` · ${r.audience}`)),
      h("td", {}, `${t("purpose." + r.purpose)}${r.round ? ` #${r.round}` : ""}`),
      h("td", { class: r.state === "failed" || r.state === "undelivered" ? "warn" : "" },
        t("state." + r.state), r.error_text ? ` (${r.error_text})` : "")))));
}

export async function renderDetail(container, alertId, user, { onChanged, onClose }) {
  const alert = await api(`/api/alerts/${alertId}`);
  const hazard = alert.target.type === "hazard" ? await api(`/api/hazards/${encodeURIComponent(alert.target.id)}`) : null;
  const head = h("div", { class: "detail-head" },
    drillBadge(alert), badge(alert.level),
    h("h2", {}, alert.target.name || alert.target.id),
    h("span", { class: "muted" }, `${t("kind." + alert.hazard_kind)} · #${alert.id}`),
    h("span", { class: `status status-${alert.status}`, "data-testid": "status" }, t("status." + alert.status)),
    h("button", { type: "button", class: "close", onclick: onClose }, t("detail.close")));
  const facts = h("dl", { class: "facts" },
    h("dt", {}, t("detail.opened")), h("dd", {}, time(alert.opened_at)),
    h("dt", {}, t("detail.data")), h("dd", {}, time(alert.last_data_time)),
    hazard ? [h("dt", {}, t("detail.threatened")),
      h("dd", {}, `${hazard.households ?? "?"} ${t("detail.households_n")} · ${hazard.people ?? "?"} ${t("detail.people")}`)] : null,
    alert.acknowledged_by ? [h("dt", {}, t("detail.acked_by")),
      h("dd", { "data-testid": "acked-by" }, `${alert.acknowledged_by} · ${time(alert.acknowledged_at)}`)] : null,
    alert.resolved_by ? [h("dt", {}, t("detail.resolved_by")),
      h("dd", {}, `${alert.resolved_by} · ${time(alert.resolved_at)} · ${alert.resolve_reason || ""}`)] : null);
  const history = h("table", { class: "grid" }, h("tbody", {}, ...alert.events.map((e) => h("tr", {},
    h("td", {}, time(e.data_time)), h("td", {}, t("action." + e.kind)),
    h("td", {}, `${t("level." + e.previous_level)} → `, badge(e.level))))));
  const audit = h("ul", { class: "plain", "data-testid": "audit" }, ...alert.audit.map((a) =>
    h("li", {}, `${time(a.at)} · ${a.actor} · ${t("action." + a.action)}`,
      a.detail && (a.detail.note || a.detail.reason || a.detail.text)
        ? ` · ${a.detail.note || a.detail.reason || a.detail.text}` : "")));
  const place = hazard ? [
    section(t("detail.households"), people(hazard.resident_households, (x) =>
      h("li", {}, `${x.name || x.id} · ${x.members ?? "?"} ${t("detail.members")} · ${x.phone || "—"}`),
    t("detail.no_households"))),
    section(t("detail.shelters"), people(hazard.shelters, (s) =>
      h("li", {}, `${s.name} · ${t("detail.distance")} ${s.distance_m} m · ${t("detail.free")} ${s.free ?? "?"}` +
        (s.contact ? ` · ${s.contact.name || ""} ${s.contact.phone || ""}` : "")), t("detail.no_shelters"))),
    section(t("detail.monitors"), people(hazard.monitors, (m) => h("li", {}, `${m.name || ""} ${m.phone || ""}`), "—"),
      hazard.responsible ? h("p", {}, `${t("detail.responsible")}: ${hazard.responsible.name || ""} ${hazard.responsible.phone || ""}`) : null),
  ] : [];
  const charts = h("div", { class: "charts" });
  const notes = h("div");
  container.replaceChildren(h("article", { class: "card detail", "data-testid": "alert-detail", "data-alert": alert.id },
    head, facts, actions(alert, user, onChanged),
    section(t("detail.evidence"), charts),
    h("div", { class: "two" }, section(t("detail.history"), history), section(t("detail.audit"), audit)),
    h("div", { class: "three" }, ...place),
    section(t("detail.notifications"), notes)));
  charts.append(...(await evidenceCharts(alert)));
  notes.append(await notifications(alert.id));
  container.dataset.ready = String(alert.id);
  return alert;
}

// The console's start: log in (the session cookie), pick the view by role (monitors get the
// phone view, others the duty room), keep it live with /api/alerts/stream.
import { api } from "./api.js";
import { DutyView } from "./duty.js";
import { setLang, currentLang, t, translateStatic } from "./i18n.js";
import { renderMonitor } from "./monitor.js";
import { PushSwitch } from "./push.js";
import { unlockAudio } from "./sound.js";

const main = document.getElementById("main");
const loginForm = document.getElementById("login");
let stream = null;
let view = null;
let user = null;
// Whether a session is believed open: asking /api/auth/me without one would only log a 401.
const MARK = "geowarn.session";
const pushMsg = document.getElementById("push-msg");
const push = new PushSwitch(document.getElementById("push"), (m) => { pushMsg.textContent = m; });

// An alert to show: from a clicked notification (the service worker tells an open console,
// or opens /console/#alert=ID).
async function showAlert(alertId) {
  if (!Number.isInteger(alertId)) return;
  if (view && view.open) await view.open(alertId);
}

function alertInAddress() {
  const m = /^#alert=(\d+)$/.exec(location.hash);
  if (!m) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return Number(m[1]);
}

function setLive(on) {
  const el = document.getElementById("live");
  el.className = `live ${on ? "on" : "off"}`;
  el.dataset.i18n = on ? "live.on" : "live.off";
  el.textContent = t(el.dataset.i18n);
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/api/alerts/stream");
  stream.onopen = () => setLive(true);
  stream.onerror = () => setLive(false);  // EventSource reconnects by itself (retry: 3 s)
  // The server ends the stream when the session ends (logged out elsewhere, expired).
  stream.addEventListener("ended", () => showLogin(t("login.ended")));
  stream.addEventListener("alert", (e) => {
    const change = JSON.parse(e.data);
    document.body.dataset.lastEvent = e.lastEventId;
    if (view && view.onEvent) view.onEvent(change);
    else if (user && user.role === "monitor") renderMonitor(main);
  });
}

async function start(me) {
  user = me;
  sessionStorage.setItem(MARK, "1");
  document.getElementById("who").textContent = `${me.display_name || me.username} · ${me.role}`;
  document.getElementById("logout").hidden = false;
  loginForm.hidden = true;
  document.body.dataset.role = me.role;
  if (me.role === "monitor") {
    view = null;
    await renderMonitor(main);
  } else {
    view = new DutyView(main, me);
    await view.refresh();
  }
  connect();
  pushMsg.textContent = "";
  // The switch's state is no part of being ready: a slow push check must not hold the view.
  push.init().catch((err) => { pushMsg.textContent = `${t("push.failed")}: ${err.message}`; });
  await showAlert(alertInAddress());
  document.body.dataset.ready = "1";
}

function showLogin(message = "") {
  user = null;
  view = null;
  if (stream) { stream.close(); stream = null; }
  setLive(false);
  push.hide();
  pushMsg.textContent = "";
  sessionStorage.removeItem(MARK);
  document.body.dataset.ready = "";
  document.getElementById("who").textContent = "";
  document.getElementById("logout").hidden = true;
  loginForm.hidden = false;
  main.replaceChildren(loginForm);
  document.getElementById("login-error").textContent = message;
}

loginForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  unlockAudio();  // a user gesture: the alarm may sound from now on
  const data = new FormData(loginForm);
  try {
    const r = await api("/api/auth/login", { method: "POST",
      json: { username: data.get("username"), password: data.get("password") } });
    loginForm.reset();
    await start(r.user);
  } catch (err) {
    document.getElementById("login-error").textContent = `${t("login.failed")}: ${err.message}`;
  }
});

window.addEventListener("geowarn:session-ended", (e) => {
  if (user) showLogin(`${t("login.ended")}: ${e.detail}`);
});

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST" }); } finally { showLogin(); }
});

document.getElementById("lang").addEventListener("click", async () => {
  setLang(currentLang() === "zh" ? "en" : "zh");
  if (user) await start(user);
});

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (e) => {
    if (e.data && e.data.type === "geowarn:open-alert") showAlert(e.data.alert);
  });
  navigator.serviceWorker.startMessages();  // addEventListener alone does not start them
}
window.addEventListener("hashchange", () => { if (user) showAlert(alertInAddress()); });

// Any click may unlock audio after a reload (the session survived, no login gesture).
document.addEventListener("click", unlockAudio, { once: true });

translateStatic();
setLang(currentLang());
if (sessionStorage.getItem(MARK)) {
  api("/api/auth/me").then(start).catch((err) => showLogin(err.status === 401 ? "" : err.message));
}
window.geowarnConsole = { version: 1, get user() { return user; } };

// Warning notifications on this device (Web Push): the switch in the top bar. It registers
// the console's service worker (sw.js), subscribes with the browser's PushManager to the
// server's VAPID key, and registers the subscription for the logged-in user
// (POST /api/push/subscriptions); switching off removes it there and in the browser.
//
// The state shown is this user's on this device: "on" only when the server lists this
// browser's subscription among the user's (GET /api/push/status). A browser another user
// subscribed shows "off"; switching on moves it to whoever switched it on.
import { api } from "./api.js";
import { t } from "./i18n.js";

// unsupported: no service worker / Push API here; denied: the browser's permission is
// refused (only the browser's site settings can undo it); unavailable: the server has no
// VAPID key; unlinked: the user is no person of the directory; off / on: can switch.
const SWITCHABLE = new Set(["off", "on"]);

function b64urlBytes(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

function bytesB64url(buf) {
  if (!buf) return "";
  const s = String.fromCharCode(...new Uint8Array(buf));
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

export class PushSwitch {
  constructor(button, say) {
    this.button = button;
    this.say = say;  // a message beside the switch
    this.reg = null;
    this.state = "unsupported";
    button.addEventListener("click", () => this.toggle());
  }

  show(state) {
    this.state = state;
    const b = this.button;
    b.hidden = false;
    b.dataset.state = state;
    b.textContent = t(`push.${state}`);
    b.title = t(`push.${state}.help`);
    // Not disabled where it cannot switch: a tap on a phone (no hover) says why instead.
    b.disabled = false;
    b.setAttribute("aria-disabled", SWITCHABLE.has(state) ? "false" : "true");
    b.setAttribute("aria-pressed", state === "on" ? "true" : "false");
  }

  hide() {
    this.button.hidden = true;
    this.reg = null;
  }

  // After login: register the worker, then show what holds for this user on this device.
  async init() {
    if (!supported()) return this.show("unsupported");
    try {
      // Playwright's blocked workers, some private modes: register gives nothing.
      this.reg = await navigator.serviceWorker.register("sw.js", { type: "module", scope: "./" });
    } catch {
      this.reg = null;
    }
    if (!this.reg || !this.reg.pushManager) return this.show("unsupported");
    return this.refresh();
  }

  async refresh() {
    if (this.refused || Notification.permission === "denied") return this.show("denied");
    const status = await api("/api/push/status");
    if (!status.configured) return this.show("unavailable");
    if (!status.linked) return this.show("unlinked");
    const sub = await this.reg.pushManager.getSubscription();
    return this.show(sub && status.endpoints.includes(sub.endpoint) ? "on" : "off");
  }

  async toggle() {
    if (this.state === "busy") return;
    if (!SWITCHABLE.has(this.state)) return this.say(t(`push.${this.state}.help`));
    const was = this.state;
    this.state = "busy";
    this.button.disabled = true;
    this.button.textContent = t("push.busy");
    try {
      if (was === "on") await this.switchOff();
      else await this.switchOn();
      this.say("");
      await this.refresh();
    } catch (err) {
      this.show(was);
      this.say(`${t("push.failed")}: ${err.message}`);
    }
  }

  async switchOn() {
    const permission = await Notification.requestPermission();
    // Refused now (some browsers report it here before Notification.permission): denied;
    // a prompt dismissed leaves it off.
    this.refused = permission === "denied";
    if (permission !== "granted") return;
    const { public_key: key } = await api("/api/push/vapid-public-key");
    let sub = await this.reg.pushManager.getSubscription();
    if (sub && bytesB64url(sub.options && sub.options.applicationServerKey) !== key) {
      await sub.unsubscribe();  // made for another key: the server could not send to it
      sub = null;
    }
    sub = sub || await this.reg.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: b64urlBytes(key) });
    await api("/api/push/subscriptions", { method: "POST", json: sub.toJSON() });
  }

  async switchOff() {
    const sub = await this.reg.pushManager.getSubscription();
    if (!sub) return;
    await api("/api/push/subscriptions/remove", { method: "POST", json: { endpoint: sub.endpoint } });
    await sub.unsubscribe();
  }
}

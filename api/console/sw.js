// The console's service worker (scope /console/): shows a warning pushed by the server's
// Web Push channel and opens its alert when clicked. Registered by push.js as a module; it
// has no fetch handler (the console is always loaded from the server) and asks nothing of
// any other host.
import { alertUrl, notificationFor, payloadOf } from "./push-note.js";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

// The worker is kept alive until the work is done; an event made by a script (not the
// browser) cannot extend it, and must not fail for trying.
function keepAlive(event, work) {
  if (event.isTrusted) event.waitUntil(work);
  return work;
}

self.addEventListener("push", (event) => {
  const { title, options } = notificationFor(payloadOf(event.data));
  keepAlive(event, self.registration.showNotification(title, options));
});

// A console window already open is told to show the alert (and brought forward where the
// browser allows); otherwise a new one opens at the alert's address.
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const alert = (event.notification.data || {}).alert ?? null;
  keepAlive(event, (async () => {
    const scope = self.registration.scope;
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const win = open.find((c) => c.url.startsWith(scope));
    if (win) {
      win.postMessage({ type: "geowarn:open-alert", alert });
      await win.focus().catch(() => null);  // only a real click may raise a window
      return;
    }
    await self.clients.openWindow(alertUrl(alert, scope));
  })());
});

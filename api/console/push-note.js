// What a warning push shows, and where clicking it leads: shared by the service worker
// (sw.js) and the page (tests run these functions in the page, where they can be called).
// The payload is notify's push channel's (notify/channels/webpush.py):
// {title, body, tag, alert: "alert 123"}.

// The alert's id from the payload's `alert` ("alert 123", or a bare number); null if none.
export function alertIdOf(payload) {
  const m = /(\d+)\s*$/.exec(String((payload && payload.alert) ?? ""));
  return m ? Number(m[1]) : null;
}

// The notification for a push payload: title and body from the payload as sent; a warning
// stays on screen until it is seen (requireInteraction) and a newer one of the same tag
// replaces it with a new alert sound (renotify).
export function notificationFor(payload) {
  const p = payload && typeof payload === "object" ? payload : { body: String(payload ?? "") };
  const title = typeof p.title === "string" && p.title ? p.title : "GeoWarn";
  const options = {
    body: typeof p.body === "string" ? p.body : "",
    data: { alert: alertIdOf(p) },
    requireInteraction: true,
  };
  if (typeof p.tag === "string" && p.tag) {
    options.tag = p.tag;
    options.renotify = true;
  }
  return { title, options };
}

// The console's address of an alert, under the service worker's scope (/console/).
export function alertUrl(alertId, scope) {
  const base = new URL(scope);
  return alertId === null || alertId === undefined ? base.href
    : new URL(`#alert=${encodeURIComponent(alertId)}`, base).href;
}

// The payload of a push event: JSON as notify sends it, else its text as the body.
export function payloadOf(data) {
  if (!data) return {};
  try { return data.json(); } catch { return { body: data.text() }; }
}

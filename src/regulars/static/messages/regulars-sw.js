/* Regulars Web Push service worker: shows each push as a notification and opens its link.
 *
 * Serve this file from the root of the store's own site (https://shop.example/regulars-sw.js).
 * A service worker only handles pages of its own origin and path, so the browser refuses one
 * loaded from the Regulars server; regulars-push.js registers it from "/regulars-sw.js" unless
 * its script tag says otherwise (data-service-worker).
 *
 * The push payload (messages/channels/push.py) is JSON:
 *   {"title", "body", "icon", "url", "actions": [{"action", "title", "url"}], "delivery_id"}
 */

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  const message = readPayload(event);
  const actions = message.actions || [];
  const actionUrls = {};
  for (const action of actions) actionUrls[action.action] = action.url;

  event.waitUntil(
    self.registration.showNotification(message.title || "", {
      body: message.body || "",
      icon: message.icon || undefined,
      tag: message.delivery_id || undefined, // a redelivered push replaces, never doubles
      actions: actions.map((action) => ({ action: action.action, title: action.title })),
      data: { url: message.url || "", actionUrls },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = (event.action && data.actionUrls && data.actionUrls[event.action]) || data.url;
  if (url) event.waitUntil(self.clients.openWindow(url));
});

function readPayload(event) {
  if (!event.data) return {};
  try {
    return event.data.json();
  } catch (error) {
    return { body: event.data.text() }; // not JSON: show the text as it came
  }
}

/* Regulars Web Push snippet: subscribes a shopper's browser to push messages from the store.
 *
 * On every page of the store:
 *
 *   <script src="https://regulars.example/push/regulars-push.js"
 *           data-write-key="WRITE_KEY"
 *           data-public-key="REGULARS_VAPID_PUBLIC_KEY"></script>
 *
 * and copy regulars-sw.js to the root of the store's own site (https://shop.example/
 * regulars-sw.js): a service worker must come from the origin of the pages it serves, so it
 * cannot be loaded from the Regulars server. `data-service-worker="/path/sw.js"` names
 * another place.
 *
 * Then, from a click (browsers only ask for permission on a user gesture):
 *
 *   regulars.push.subscribe({ userId: "cus_123" })        // or { anonymousId: "..." }
 *
 * or mark a button and let the snippet do it:
 *
 *   <button data-regulars-push data-user-id="cus_123">Tell me when it ships</button>
 *
 * subscribe() resolves to the PushSubscription, or null when permission was not granted, and
 * POSTs {endpoint, keys: {p256dh, auth}, userId, anonymousId, userAgent} to
 * <regulars>/push/subscriptions with the write key as the Basic user (as Segment does).
 */
(function () {
  "use strict";

  const script = document.currentScript;
  const config = {
    origin: new URL(script.src).origin,
    writeKey: script.dataset.writeKey,
    publicKey: script.dataset.publicKey,
    serviceWorker: script.dataset.serviceWorker || "/regulars-sw.js",
  };

  async function subscribe(identity) {
    const { userId, anonymousId } = identity || {};
    if (!userId && !anonymousId) {
      throw new Error("regulars.push: needs a userId or an anonymousId");
    }
    if (!supported()) throw new Error("regulars.push: this browser has no Web Push");
    // First, before any other await: the permission prompt needs the click's gesture.
    if ((await Notification.requestPermission()) !== "granted") return null;

    await navigator.serviceWorker.register(config.serviceWorker);
    const registration = await navigator.serviceWorker.ready; // the worker is active
    const subscription =
      (await registration.pushManager.getSubscription()) ||
      (await registration.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: urlBase64ToUint8Array(config.publicKey),
      }));
    await save(subscription.toJSON(), userId, anonymousId);
    return subscription;
  }

  async function save(subscription, userId, anonymousId) {
    const response = await fetch(config.origin + "/push/subscriptions", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Authorization: "Basic " + btoa(config.writeKey + ":"),
      },
      body: JSON.stringify({
        endpoint: subscription.endpoint,
        keys: { p256dh: subscription.keys.p256dh, auth: subscription.keys.auth },
        userId: userId || null,
        anonymousId: anonymousId || null,
        userAgent: navigator.userAgent,
      }),
    });
    if (!response.ok) throw new Error("regulars.push: not saved (HTTP " + response.status + ")");
  }

  function supported() {
    return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
  }

  // The VAPID public key is base64url text; pushManager.subscribe wants its 65 bytes.
  function urlBase64ToUint8Array(base64url) {
    const padding = "=".repeat((4 - (base64url.length % 4)) % 4);
    const base64 = (base64url + padding).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-regulars-push]");
    if (!button) return;
    const identity = { userId: button.dataset.userId, anonymousId: button.dataset.anonymousId };
    subscribe(identity).catch((error) => console.warn(error));
  });

  window.regulars = window.regulars || {};
  window.regulars.push = { subscribe, supported };
})();

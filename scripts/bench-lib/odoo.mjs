// An event as Odoo's send_ipai_event() posts it to odoo-webhook: the seed's
// HMAC scheme over `{timestamp}.{body}`, with an idempotency key; or, with
// `endpoint` "odoo-webhook/batch", a batch ({events: [...]}) signed the same way.
import { createHmac } from "node:crypto";

export function signedOdooRequest(base, secret, key, event, endpoint = "odoo-webhook") {
  const body = JSON.stringify(event);
  const timestamp = String(Date.now());
  const signature = createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
  return [
    `${base}/functions/v1/${endpoint}`,
    {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-ipai-timestamp": timestamp,
        "x-ipai-signature": signature,
        "x-idempotency-key": key,
      },
      body,
    },
  ];
}

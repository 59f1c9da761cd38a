// The sign-in scaffolding every switchyard page shares: loads config.json,
// makes the supabase-js client, takes a session from the URL fragment (a magic
// link; locally `scripts/dev session <email>`) or from storage, shows the
// signed-out panel when there is none, and drops a session that expired or
// was refused. The page itself supplies what to do once signed in.
//
// Elements it expects: #booting, #signed-out (with #signed-out-reason),
// #account (#account-email, #account-role, #sign-out), #offline, and the
// page's content element named by `contentId`.
import { createClient } from "@supabase/supabase-js";
import { $ } from "./ui.js";

/**
 * Starts the page. `onSignedIn(session)` runs when a session begins,
 * `onSignedOut()` when it ends (drop whatever the page holds),
 * `onOnline(online)` when the connection comes or goes.
 */
export function startPage({ schema, contentId, onSignedIn, onSignedOut, onOnline = () => {} }) {
  const page = {
    config: null,
    client: null,
    session: null,
    signedIn: false,
    online: navigator.onLine,
    operator: false,
    signedOutReason: null,
    expiryTimer: null,
    sessionExpired,
    accessToken,
  };

  function showSignedIn(session) {
    page.session = session;
    page.signedIn = true;
    page.signedOutReason = null;
    const user = session.user ?? {};
    page.operator = user.app_metadata?.role === "operator";
    $("account-email").textContent = user.email || user.id || "";
    $("account-role").textContent = page.operator ? "operator" : "";
    $("account-role").hidden = !page.operator;
    $("account").hidden = false;
    $("booting").hidden = true;
    $("signed-out").hidden = true;
    $(contentId).hidden = false;
    scheduleExpiryCheck();
    onSignedIn(session);
  }

  function showSignedOut(reason) {
    page.signedIn = false;
    page.session = null;
    page.operator = false;
    clearTimeout(page.expiryTimer);
    onSignedOut();
    $("signed-out-reason").textContent = reason;
    $("booting").hidden = true;
    $(contentId).hidden = true;
    $("account").hidden = true;
    $("signed-out").hidden = false;
  }

  /** The session is gone or rejected: drop it and show the signed-out panel. */
  async function sessionExpired(reason = "Your session has expired or is no longer valid. Mint a new one.") {
    if (!page.signedIn) return;
    page.signedOutReason = reason;
    showSignedOut(reason);
    try {
      await page.client.auth.signOut({ scope: "local" });
    } catch {
      // The local session is removed before any request; nothing else to do.
    }
    page.signedOutReason = null;
  }

  /** The current access token, or null when signed out. */
  async function accessToken() {
    const { data } = await page.client.auth.getSession();
    if (!data.session) return null;
    page.session = data.session;
    return data.session.access_token;
  }

  // An access token is not refreshed locally (Supabase Auth refreshes it when
  // deployed): when it runs out, ask supabase-js, which drops it.
  function scheduleExpiryCheck() {
    clearTimeout(page.expiryTimer);
    const expiresAt = page.session?.expires_at;
    if (!expiresAt) return;
    const delay = Math.max(0, expiresAt * 1000 - Date.now() + 1000);
    page.expiryTimer = setTimeout(async () => {
      if (!page.signedIn) return;
      const { data } = await page.client.auth.getSession();
      if (!data.session || data.session.expires_at * 1000 <= Date.now()) sessionExpired();
      else {
        page.session = data.session;
        scheduleExpiryCheck();
      }
    }, Math.min(delay, 2 ** 31 - 1));
  }

  function onAuthChange(event, session) {
    if (event === "SIGNED_OUT" || !session) {
      if (!page.signedIn) return;
      const expired = page.session?.expires_at && page.session.expires_at * 1000 <= Date.now();
      showSignedOut(
        page.signedOutReason ??
          (expired ? "Your session has expired. Mint a new one." : "You were signed out (in this tab or another one)."),
      );
      return;
    }
    if (page.signedIn) {
      page.session = session;
      scheduleExpiryCheck();
    } else if (event === "SIGNED_IN" || event === "TOKEN_REFRESHED" || event === "INITIAL_SESSION") {
      showSignedIn(session);
    }
  }

  function renderOnline() {
    $("offline").hidden = page.online;
    document.body.classList.toggle("is-offline", !page.online);
    onOnline(page.online);
  }

  async function boot() {
    window.addEventListener("online", () => {
      page.online = true;
      renderOnline();
    });
    window.addEventListener("offline", () => {
      page.online = false;
      renderOnline();
    });
    $("sign-out").addEventListener("click", async () => {
      page.signedOutReason = "You signed out.";
      showSignedOut(page.signedOutReason);
      await page.client.auth.signOut();
      page.signedOutReason = null;
    });
    renderOnline();
    try {
      const response = await fetch("./config.json", { cache: "no-store" });
      if (!response.ok) throw new Error(`config.json answered HTTP ${response.status}`);
      page.config = await response.json();
    } catch (error) {
      showSignedOut(`The page could not load its configuration: ${error.message}`);
      return;
    }
    page.client = createClient(page.config.supabase_url, page.config.anon_key, {
      db: { schema },
      auth: { detectSessionInUrl: true, persistSession: true, flowType: "implicit" },
    });
    // Reads a session from the URL fragment (a magic link) or from storage.
    const { error: urlError } = await page.client.auth.initialize();
    if (location.hash === "" && location.href.endsWith("#")) {
      history.replaceState(history.state, "", location.href.slice(0, -1));
    }
    page.client.auth.onAuthStateChange((event, session) => {
      // Deferred: supabase-js must not be called back from inside this callback.
      setTimeout(() => onAuthChange(event, session), 0);
    });
    const { data } = await page.client.auth.getSession();
    if (data.session) {
      showSignedIn(data.session);
    } else if (urlError) {
      showSignedOut(`The session in the link was not accepted (${urlError.message}). Mint a new one.`);
    } else {
      showSignedOut(page.signedOutReason ?? "You are not signed in.");
    }
  }

  // After the caller has the page object: the callbacks may use it.
  queueMicrotask(boot);
  return page;
}

/**
 * shop-client.js: the one module a front end needs to talk to the shop's API and handle
 * the lag window. Plain ES module, no dependencies: copy it into any web front end.
 *
 * Commands write to PostgreSQL and answer with an X-Consistency-Token; projected reads
 * (search, order summary, history, dashboard) are eventually consistent. This client
 * keeps the latest token in memory (never in storage), sends it on projected reads so a
 * user reads their own writes, and opens the live consistency stream to learn when a
 * view includes a write.
 *
 *   import { ShopClient } from "./shop-client.js";
 *   // Session (cookie) auth from a page the shop served: pass the CSRF token.
 *   const shop = new ShopClient({ base: "/api", csrfToken });
 *   // Or an API token (kept in memory only): new ShopClient({ base, authToken }).
 *
 *   const placed = await shop.command("POST", "/orders", { lines: [{ product_id: 7, quantity: 1 }] });
 *   // -> { ok, status, body, token, ms, headers }; a fresh Idempotency-Key per call
 *   //    (pass { idempotencyKey } to retry the same command safely). shop.lastToken = token.
 *
 *   const read = await shop.read("/customers/3/dashboard");
 *   // -> { ok, status, body, ms, headers, consistency: { mode, readModel, lagMs, stale } }
 *   //    Sends shop.lastToken by default (read-your-own-writes; the read waits up to
 *   //    maxWaitMs for it). { token: null } sends none: for a signed-in user the server
 *   //    then waits for that user's latest command (session consistency). { token: "none" }
 *   //    opts out of every wait: the fastest answer, X-Stale says if it lacks your write.
 *
 *   const done = await shop.watch(placed.token, ["order_summary", "orders_search"], {
 *     onCaughtUp(view, waitedMs) {},   // each view, as soon as it includes the write
 *   });
 *   // -> { caughtUp: { view: waitedMs }, timedOut: [views] } once every view caught up
 *   //    or giveUpAfterMs passed. The stream is reopened after a timeout or a dropped
 *   //    connection; watch(...).close() stops it early.
 *
 * Errors: non-2xx answers are returned (ok: false) with the API's JSON error body
 * ({ error: { code, message } }); only network failures throw.
 */

const TOKEN = "X-Consistency-Token";

function randomKey() {
  // crypto.randomUUID exists only in secure contexts; getRandomValues everywhere.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function parseBody(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: { code: "not_json", message: text.slice(0, 200) } };
  }
}

export class ShopClient {
  constructor({ base = "/api", csrfToken = null, authToken = null } = {}) {
    this.base = base.replace(/\/$/, "");
    this.csrfToken = csrfToken;
    this.authToken = authToken;
    this.lastToken = null;
  }

  headers(extra = {}) {
    const headers = { Accept: "application/json", ...extra };
    if (this.authToken) headers.Authorization = `Token ${this.authToken}`;
    if (this.csrfToken) headers["X-CSRFToken"] = this.csrfToken;
    return headers;
  }

  /** Run a command; remember its consistency token for later reads. */
  async command(method, path, body = undefined, { idempotencyKey = randomKey() } = {}) {
    const started = performance.now();
    const response = await fetch(this.base + path, {
      method,
      credentials: "same-origin",
      headers: this.headers({
        "Content-Type": "application/json",
        "Idempotency-Key": idempotencyKey,
      }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const result = {
      ok: response.ok,
      status: response.status,
      body: await parseBody(response),
      token: response.headers.get(TOKEN),
      ms: Math.round(performance.now() - started),
      headers: response.headers,
    };
    if (result.ok && result.token) this.lastToken = result.token;
    return result;
  }

  /** A GET; projected reads wait (bounded) for `token`, by default the latest one. */
  async read(path, { token = this.lastToken, maxWaitMs = null } = {}) {
    let url = this.base + path;
    if (maxWaitMs !== null) url += (url.includes("?") ? "&" : "?") + `max_wait_ms=${maxWaitMs}`;
    const extra = token ? { [TOKEN]: token } : {};
    const started = performance.now();
    const response = await fetch(url, { credentials: "same-origin", headers: this.headers(extra) });
    const h = response.headers;
    return {
      ok: response.ok,
      status: response.status,
      body: await parseBody(response),
      ms: Math.round(performance.now() - started),
      headers: h,
      consistency: {
        mode: h.get("X-Consistency"),
        readModel: h.get("X-Read-Model"),
        lagMs: h.has("X-Read-Model-Lag-Ms") ? Number(h.get("X-Read-Model-Lag-Ms")) : null,
        stale: h.get("X-Stale") === "true",
      },
    };
  }

  /** Tell when each of `views` includes the write of `token` (Server-Sent Events). */
  watch(token, views, { onCaughtUp = () => {}, maxWaitMs = 60000, giveUpAfterMs = 300000, retryMs = 1000 } = {}) {
    const started = performance.now();
    const caughtUp = {};
    let pending = [...new Set(views)];
    let source = null;
    let timer = null;
    let closed = false;
    let finish;
    const result = new Promise((resolve) => { finish = resolve; });

    const stop = () => {
      closed = true;
      clearTimeout(timer);
      if (source) source.close();
      finish({ caughtUp, timedOut: pending });
    };
    const reopenLater = (delay) => {
      if (source) source.close();
      if (closed) return;
      if (performance.now() - started > giveUpAfterMs) return stop();
      timer = setTimeout(open, delay);
    };
    const open = () => {
      if (closed) return;
      if (!pending.length) return stop();
      const query = new URLSearchParams({ token, views: pending.join(","), max_wait_ms: String(maxWaitMs) });
      source = new EventSource(`${this.base}/consistency/stream?${query}`);
      source.addEventListener("caught_up", (event) => {
        const { view } = JSON.parse(event.data);
        // Measured from when watching began, across reopened streams.
        const waited = Math.round(performance.now() - started);
        caughtUp[view] = waited;
        pending = pending.filter((v) => v !== view);
        onCaughtUp(view, waited);
      });
      // The server closes the stream after `end`: without close() EventSource would
      // reconnect by itself and ask again for views that already caught up.
      source.addEventListener("end", () => (pending.length ? reopenLater(0) : stop()));
      source.addEventListener("error", (event) => {
        // A server `error` event (a read model unavailable) or a dropped connection.
        if (event.data || source.readyState !== EventSource.OPEN) reopenLater(retryMs);
      });
    };
    open();
    result.close = stop;
    return result;
  }
}

// The storefront page: search, order, pay, and show each write through the lag window.
// All API and stream traffic goes through shop-client.js; this module only draws.
//
// Every list has one state at a time, on its status line's data-state: loading, ready,
// empty, catching-up (a view is behind: the page retries as the API says, and shows
// nothing that could pass for current meanwhile) or error (with a way to try again).
import { ShopClient } from "./shop-client.js";

const root = document.getElementById("storefront");
const customerId = root.dataset.customerId;
const shop = new ShopClient({ base: root.dataset.api, csrfToken: root.dataset.csrf });
// The demo's stand-in for a payment provider (served with DEBUG on only).
const sandbox = new ShopClient({ base: "/shop", csrfToken: root.dataset.csrf });
const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 20;
// The views that must include a write before the page calls it confirmed.
const ORDER_VIEWS = ["order_summary", "orders_search"];
const PAY_VIEWS = ["order_summary", "customer_dashboard"];
const FUNDS_VIEWS = ["customer_dashboard"];
// How long the page keeps retrying a view that is catching up before it says so.
const CATCH_UP_PATIENCE_MS = 30000;

const dollars = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const money = (cents) => dollars.format(cents / 100);
const when = new Intl.DateTimeFormat("en-US", { dateStyle: "medium", timeStyle: "short" });
const date = (iso) => (iso ? when.format(new Date(iso)) : "");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The API's error codes, in the shopper's words.
const SAY = {
  insufficient_balance: "Your balance doesn't cover this order yet. Add funds, then pay.",
  insufficient_stock: "Sorry, there isn't enough of this in stock any more.",
  product_unavailable: "Sorry, this product is no longer for sale.",
  invalid_transition: "This order can no longer be paid.",
  throttled: "Too many requests at once. Wait a moment and try again.",
  overloaded: "The shop is very busy right now. Try again in a moment.",
  read_model_unavailable: "This part of the shop is catching up. Try again in a moment.",
  not_found: "That could not be found.",
};

function say(result) {
  const error = result.body?.error;
  if (error?.code === "invalid" && error.fields) {
    return Object.entries(error.fields).map(([field, problems]) => `${field}: ${problems.join(" ")}`).join(" ");
  }
  return SAY[error?.code] || error?.message || `Something went wrong (HTTP ${result.status}).`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key.startsWith("data-") || key.startsWith("aria-") || key === "class" || key === "role") {
      node.setAttribute(key, value);
    } else node[key] = value;
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** A list's status line: one state and what it means, read out by screen readers. */
function status(id, state, ...content) {
  const line = $(id);
  line.dataset.state = state;
  line.replaceChildren(...content);
  line.closest("section")?.setAttribute("aria-busy", String(state === "loading" || state === "catching-up"));
}

function setState(node, state, label = state) {
  node.dataset.state = state;
  const badge = node.querySelector(".state") || node.querySelector(".badges").appendChild(el("span"));
  badge.className = `state ${state}`;
  badge.textContent = label;
  if (state === "confirmed") {
    // The badge is for writes in flight: once confirmed it says so for a moment, then goes.
    setTimeout(() => node.dataset.state === "confirmed" && badge.remove(), 5000);
  }
}

function timelineStep(title, command) {
  const views = el("span", { class: "views" });
  const step = el("li", { "data-step": title }, el("b", {}, title), ` command ${command.ms} ms `, views);
  $("timeline").append(step);
  $("timeline-empty")?.remove();
  return {
    waiting(view) {
      views.append(el("span", { class: "view behind", "data-view": view }, `${view} catching up…`));
    },
    caughtUp(view, ms) {
      const node = views.querySelector(`[data-view="${view}"]`);
      node.className = "view";
      node.textContent = `${view} +${ms} ms`;
    },
  };
}

/**
 * A read that waits out a view catching up: a 503 says when to retry (Retry-After).
 * `onRetry(attempt, seconds)` is told before each wait, so the page can say so.
 */
async function readPatiently(path, options, onRetry = () => {}) {
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    const read = await shop.read(path, options);
    if (read.status !== 503 || performance.now() - started > CATCH_UP_PATIENCE_MS) return read;
    const seconds = Number(read.headers.get("Retry-After")) || 1;
    onRetry(attempt, seconds);
    await sleep(seconds * 1000);
  }
}

async function watchWrite(title, command, views, onConfirmed) {
  const step = timelineStep(title, command);
  views.forEach((v) => step.waiting(v));
  const { timedOut } = await shop.watch(command.token, views, {
    onCaughtUp: (view, ms) => step.caughtUp(view, ms),
  });
  if (!timedOut.length) await onConfirmed();
}

// --- balance ---------------------------------------------------------------------------

// Writes of this page that change the balance and are not confirmed yet: while there
// are some, the balance shown is the one they leave, not a re-read.
let balanceWrites = 0;
let balanceStaleSince = null;

async function showBalance(token, { patient = false } = {}) {
  const read = await readPatiently(`/customers/${customerId}/dashboard`, { token });
  if (balanceWrites && patient) return;
  if (!read.ok || !read.body) {
    $("balance").textContent = "unavailable";
    $("balance-state").dataset.state = "failed";
    $("balance-state").className = "state failed";
    $("balance-state").textContent = say(read);
    return;
  }
  $("balance").textContent = money(read.body.balance_cents);
  $("balance").dataset.cents = read.body.balance_cents;
  const stale = read.consistency.stale;
  $("balance-state").dataset.state = stale ? "confirming" : "confirmed";
  $("balance-state").className = `state ${stale ? "confirming" : "confirmed"}`;
  $("balance-state").textContent = stale ? "confirming" : "up to date";
  if (stale && patient) {
    // After a reload the session's latest write may not be in the view yet: look again.
    balanceStaleSince ??= performance.now();
    if (performance.now() - balanceStaleSince < CATCH_UP_PATIENCE_MS) {
      setTimeout(() => showBalance(null, { patient }), 1000);
    }
  } else balanceStaleSince = null;
}

function showBalanceConfirming(cents) {
  if (cents !== null) $("balance").textContent = money(cents);
  $("balance-state").dataset.state = "confirming";
  $("balance-state").className = "state confirming";
  $("balance-state").textContent = "confirming";
}

async function addFunds(button) {
  button.disabled = true;
  const before = Number($("balance").dataset.cents);
  const added = await sandbox.command("POST", "/add-funds", {});
  button.disabled = false;
  if (!added.ok) {
    $("funds-message").textContent = say(added);
    return;
  }
  shop.lastToken = added.token; // later reads wait for the credit, like any write
  $("funds-message").textContent = `${money(added.body.amount_cents)} added.`;
  showBalanceConfirming(Number.isNaN(before) ? null : before + added.body.amount_cents);
  $("balance").dataset.cents = added.body.balance_cents;
  balanceWrites++;
  await watchWrite("Add funds", added, FUNDS_VIEWS, () => showBalance(added.token));
  balanceWrites--;
}

// --- orders ----------------------------------------------------------------------------

function orderItem(order) {
  const names = order.lines
    ? order.lines.map((l) => (l.quantity > 1 ? `${l.quantity} × ${l.product_name}` : l.product_name))
    : order.item_names || [];
  const what = names.length ? names.join(", ") : `${order.item_count} item${order.item_count === 1 ? "" : "s"}`;
  const item = el("li", { "data-order-id": order.id, "data-status": order.status, class: "order" },
    el("div", { class: "order-main" },
      el("span", { class: "what" }, what),
      el("span", { class: "when" }, date(order.created_at))),
    el("div", { class: "badges" },
      el("span", { class: "amount" }, money(order.total_cents)),
      el("span", { class: `status status-${order.status}` }, order.status)));
  if (order.status === "pending") addPayButton(item, order);
  return item;
}

function setOrderStatus(item, statusName) {
  item.dataset.status = statusName;
  const badge = item.querySelector(".status");
  badge.className = `status status-${statusName}`;
  badge.textContent = statusName;
}

function alertOn(item, text, ...actions) {
  item.querySelector(".alert")?.remove();
  item.append(el("p", { class: "alert", role: "alert" }, text, ...actions));
}

function addPayButton(item, order) {
  const button = el("button", { class: "pay", type: "button", "aria-label": `Pay ${money(order.total_cents)} for this order` },
    `Pay ${money(order.total_cents)}`);
  button.addEventListener("click", () => pay(item, order, button));
  item.querySelector(".badges").append(button);
}

let ordersCursor = null;
let ordersStaleSince = null;

async function loadOrders({ more = false } = {}) {
  if (!more) {
    ordersCursor = null;
    if (ordersStaleSince === null) status("orders-status", "loading", "Loading your orders…");
  }
  const query = new URLSearchParams({ page_size: "10" });
  if (ordersCursor) query.set("search_after", ordersCursor);
  // Sent with no token: the session makes the read wait (bounded) for this customer's
  // latest command, so an order placed before a reload is in it, or the answer says not.
  const read = await readPatiently(`/customers/${customerId}/orders?${query}`, {}, (attempt, seconds) =>
    status("orders-status", "catching-up", `Your order history is catching up; retrying in ${seconds} s…`));
  if (!read.ok) {
    status("orders-status", "error", `Your orders could not be loaded: ${say(read)} `,
      retryButton(() => loadOrders({ more })));
    return;
  }
  for (const order of read.body.results) {
    const id = order.id ?? order.order_id;
    if (!document.querySelector(`#orders [data-order-id="${id}"]`)) $("orders").append(orderItem({ ...order, id }));
  }
  ordersCursor = read.body.next_search_after;
  $("more-orders").hidden = !ordersCursor;
  if (read.consistency.stale && !more) {
    // The history does not show this customer's latest change yet: say so and look again
    // (each look waits, bounded, for that change), for as long as the page is patient.
    ordersStaleSince ??= performance.now();
    if (performance.now() - ordersStaleSince < CATCH_UP_PATIENCE_MS) {
      status("orders-status", "catching-up", "Your latest order is on its way into this list…");
      setTimeout(() => loadOrders(), 1000);
      return;
    }
    ordersStaleSince = null;
    status("orders-status", "error", "Your latest order is taking longer than usual to show here. ",
      retryButton(() => loadOrders()));
    return;
  }
  ordersStaleSince = null;
  const shown = document.querySelectorAll("#orders li[data-order-id]").length;
  if (!shown) status("orders-status", "empty", "No orders yet. Find something on the left.");
  else status("orders-status", "ready", `${shown} of ${read.body.count} order${read.body.count === 1 ? "" : "s"}`);
}

// --- search ----------------------------------------------------------------------------

let searchRun = 0;
let searchPage = 1;

function retryButton(again) {
  const button = el("button", { type: "button", class: "retry" }, "Try again");
  button.addEventListener("click", again);
  return button;
}

function productItem(product) {
  const id = product.id ?? product.product_id;
  const buy = el("button", { class: "buy", type: "button", "aria-label": `Buy one ${product.name} for ${money(product.price_cents)}` }, "Buy");
  buy.addEventListener("click", () => placeOrder({ ...product, id }));
  return el("li", { "data-product-id": id, class: "product" },
    el("div", { class: "product-main" },
      el("span", { class: "name" }, product.name),
      el("span", { class: "category" }, product.category)),
    el("div", { class: "badges" }, el("span", { class: "price" }, money(product.price_cents)), buy));
}

async function search(event, { more = false } = {}) {
  event?.preventDefault();
  const run = ++searchRun; // a newer search makes this one's answer irrelevant
  const q = $("search-q").value.trim();
  searchPage = more ? searchPage + 1 : 1;
  const list = $("products");
  $("more-products").hidden = true;
  if (!more) {
    // Never leave the previous results up while the next ones come: they would look current.
    list.replaceChildren();
    status("search-status", "loading", q ? `Searching for “${q}”…` : "Loading products…");
  }
  const query = new URLSearchParams({ q, in_stock: "true", page: String(searchPage), page_size: String(PAGE_SIZE) });
  // A catalogue search waits for nobody's write, not even this customer's latest order
  // (which changed stock): opt out of the session's wait, for the fastest answer.
  const read = await readPatiently(`/products/search?${query}`, { token: "none" }, (attempt, seconds) => {
    if (run === searchRun) {
      status("search-status", "catching-up",
        `The catalogue search is catching up with the latest changes; retrying in ${seconds} s… (attempt ${attempt + 1})`);
    }
  });
  if (run !== searchRun) return;
  if (!read.ok) {
    status("search-status", "error", `Search did not work: ${say(read)} `, retryButton(() => search(null, { more })));
    return;
  }
  for (const product of read.body.results) list.append(productItem(product));
  const shown = list.children.length;
  if (!shown) {
    status("search-status", "empty", q ? `No products match “${q}”.` : "The catalogue is empty.");
    return;
  }
  status("search-status", "ready", `Showing ${shown} of ${read.body.count} product${read.body.count === 1 ? "" : "s"}`);
  $("more-products").hidden = !read.body.next;
}

// --- commands --------------------------------------------------------------------------

async function placeOrder(product) {
  // The optimistic entry: shown at once, before the command answers.
  const item = orderItem({ id: "", status: "placing", total_cents: product.price_cents,
    lines: [{ quantity: 1, product_name: product.name }], created_at: new Date().toISOString() });
  setState(item, "confirming");
  $("orders").prepend(item);
  status("orders-status", "ready", "");
  const placed = await shop.command("POST", "/orders", { lines: [{ product_id: product.id, quantity: 1 }] });
  if (!placed.ok) {
    setOrderStatus(item, "refused");
    setState(item, "failed", "not placed");
    // The product was on the page, so "not found" means it was taken off sale since.
    alertOn(item, placed.body?.error?.code === "not_found" ? SAY.product_unavailable : say(placed));
    return;
  }
  const order = placed.body;
  item.dataset.orderId = order.id;
  item.querySelector(".amount").textContent = money(order.total_cents);
  setOrderStatus(item, order.status);
  await watchWrite("Place order", placed, ORDER_VIEWS, async () => {
    setState(item, "confirmed");
    if (order.status === "pending") addPayButton(item, order);
  });
}

async function pay(item, order, button) {
  button.disabled = true;
  item.querySelector(".alert")?.remove();
  const before = Number($("balance").dataset.cents);
  const paid = await shop.command("POST", `/orders/${order.id}/pay`);
  if (!paid.ok) {
    button.disabled = false;
    if (paid.body?.error?.code === "insufficient_balance") {
      const short = Number.isNaN(before) ? "" : ` Your balance is ${money(before)}; this order is ${money(order.total_cents)}.`;
      alertOn(item, say(paid) + short + " ", fundsHint());
    } else alertOn(item, say(paid));
    return;
  }
  button.remove();
  setOrderStatus(item, paid.body.status);
  setState(item, "confirming");
  // Optimistic: the balance the payment leaves, until the dashboard view shows it.
  showBalanceConfirming(Number.isNaN(before) ? null : before - order.total_cents);
  balanceWrites++;
  await watchWrite("Pay", paid, PAY_VIEWS, async () => {
    setState(item, "confirmed");
    await showBalance(paid.token);
  });
  balanceWrites--;
}

function fundsHint() {
  const link = el("a", { href: "#balance-box" }, "Add funds");
  link.addEventListener("click", () => $("add-funds")?.focus());
  return link;
}

// --- wiring ----------------------------------------------------------------------------

$("search-form").addEventListener("submit", search);
$("more-products").addEventListener("click", () => search(null, { more: true }));
$("more-orders").addEventListener("click", () => loadOrders({ more: true }));
$("add-funds")?.addEventListener("click", (event) => addFunds(event.currentTarget));
await Promise.all([showBalance(null, { patient: true }), loadOrders(), search()]);
root.dataset.ready = "true";

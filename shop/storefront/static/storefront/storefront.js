// The storefront page: search, order, pay, and show each write through the lag window.
// All API and stream traffic goes through shop-client.js; this module only draws.
import { ShopClient } from "./shop-client.js";

const root = document.getElementById("storefront");
const customerId = root.dataset.customerId;
const shop = new ShopClient({ base: root.dataset.api, csrfToken: root.dataset.csrf });
const $ = (id) => document.getElementById(id);
const money = (cents) => `$${(cents / 100).toFixed(2)}`;
// The views that must include a write before the page calls it confirmed.
const ORDER_VIEWS = ["order_summary", "orders_search"];
const PAY_VIEWS = ["order_summary", "customer_dashboard"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("data-") || key === "class") node.setAttribute(key, value);
    else node[key] = value;
  }
  node.append(...children);
  return node;
}

function setState(node, state, label = state) {
  node.dataset.state = state;
  const badge = node.querySelector(".state") || node.appendChild(el("span", { class: "state" }));
  badge.className = `state ${state}`;
  badge.textContent = label;
}

function timelineStep(title, command) {
  const views = el("span", { class: "views" });
  const step = el("li", { "data-step": title }, el("b", {}, title), ` command ${command.ms} ms `, views);
  $("timeline").append(step);
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

// A 503 means a view is being rebuilt or is beyond its lag SLO: it says when to retry.
async function readPatiently(path, options, tries = 5) {
  for (let attempt = 1; ; attempt++) {
    const read = await shop.read(path, options);
    if (read.status !== 503 || attempt === tries) return read;
    const seconds = Number(read.headers.get("Retry-After")) || 1;
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
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

async function showBalance(token) {
  const read = await readPatiently(`/customers/${customerId}/dashboard`, { token });
  if (read.ok && read.body) {
    $("balance").textContent = money(read.body.balance_cents);
    $("balance").dataset.cents = read.body.balance_cents;
    setState($("balance-state"), read.consistency.stale ? "confirming" : "confirmed",
      read.consistency.stale ? "confirming" : "up to date");
  }
}

function orderItem(order) {
  const item = el("li", { "data-order-id": order.id },
    el("span", { class: "what" }, `${order.item_count || 1} item(s), ${money(order.total_cents)}`), " ",
    el("span", { class: "status" }, order.status), " ");
  if (order.status === "pending") addPayButton(item, order);
  return item;
}

function addPayButton(item, order) {
  const button = el("button", { class: "pay", type: "button" }, "Pay");
  button.addEventListener("click", () => pay(item, order, button));
  item.append(button, " ");
}

async function loadOrders() {
  const read = await readPatiently(`/customers/${customerId}/orders`, {});
  if (!read.ok) return;
  for (const order of read.body.results) {
    if (!document.querySelector(`#orders [data-order-id="${order.order_id || order.id}"]`)) {
      const item = orderItem({ ...order, id: order.order_id || order.id });
      setState(item, "confirmed");
      $("orders").append(item);
    }
  }
}

async function search(event) {
  event?.preventDefault();
  const q = $("search-q").value;
  // A catalogue search waits for nobody's write: ask for the fastest answer.
  const read = await readPatiently(`/products/search?q=${encodeURIComponent(q)}&in_stock=true`, { token: null });
  const list = $("products");
  list.replaceChildren();
  if (!read.ok) {
    list.append(el("li", { class: "error" }, read.body?.error?.message || `error ${read.status}`));
    return;
  }
  for (const product of read.body.results) {
    const id = product.id ?? product.product_id;
    const buy = el("button", { class: "buy", type: "button" }, "Buy one");
    buy.addEventListener("click", () => placeOrder({ ...product, id }));
    list.append(el("li", { "data-product-id": id }, `${product.name} · ${money(product.price_cents)} `, buy));
  }
}

async function placeOrder(product) {
  // The optimistic entry: shown at once, before the command answers.
  const item = el("li", { "data-order-id": "" },
    el("span", { class: "what" }, `1 × ${product.name}, ${money(product.price_cents)}`), " ",
    el("span", { class: "status" }, "placing"), " ");
  setState(item, "confirming");
  $("orders").prepend(item);
  const placed = await shop.command("POST", "/orders", { lines: [{ product_id: product.id, quantity: 1 }] });
  if (!placed.ok) {
    item.querySelector(".status").textContent = placed.body?.error?.message || `error ${placed.status}`;
    setState(item, "failed");
    return;
  }
  const order = placed.body;
  item.dataset.orderId = order.id;
  item.querySelector(".what").textContent = `1 × ${product.name}, ${money(order.total_cents)}`;
  item.querySelector(".status").textContent = order.status;
  await watchWrite("Place order", placed, ORDER_VIEWS, async () => {
    setState(item, "confirmed");
    if (order.status === "pending") addPayButton(item, order);
  });
}

async function pay(item, order, button) {
  button.disabled = true;
  const before = Number($("balance").dataset.cents);
  const paid = await shop.command("POST", `/orders/${order.id}/pay`);
  if (!paid.ok) {
    button.disabled = false;
    item.querySelector(".status").textContent = paid.body?.error?.message || `error ${paid.status}`;
    return;
  }
  button.remove();
  item.querySelector(".status").textContent = paid.body.status;
  setState(item, "confirming");
  // Optimistic: the balance the payment leaves, until the dashboard view shows it.
  if (!Number.isNaN(before)) $("balance").textContent = money(before - order.total_cents);
  setState($("balance-state"), "confirming");
  await watchWrite("Pay", paid, PAY_VIEWS, async () => {
    setState(item, "confirmed");
    await showBalance(paid.token);
  });
}

$("search-form").addEventListener("submit", search);
await Promise.all([showBalance(null), loadOrders(), search()]);
root.dataset.ready = "true";

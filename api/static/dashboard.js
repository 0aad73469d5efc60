// The dashboard: everything comes from the API with the key the user gives (kept for this tab only).
"use strict";

const LABELS = { available: "available", running_low: "running low", out_of_stock: "out of stock" };
const FEED_LENGTH = 50;
const REFRESH_MS = 10000;
let key = "";
let chart = null;
let stockOutsChart = null;
let attentionNext = null;

const $ = (id) => document.getElementById(id);

// Names, not ids: every warehouse is loaded at the start (the selector lists them); a product's name is asked for
// once, the first time one of its rows is shown.
const warehouseNames = new Map();
const productNames = new Map();
const productLookups = new Map();
const warehouseName = (id) => warehouseNames.get(id) || `warehouse ${id}`;
const productName = (id) => productNames.get(id) || `product ${id}`;
const selectedWarehouse = () => $("warehouse").value;

async function knowProducts(ids) {
  await Promise.all([...new Set(ids)].filter((id) => !productNames.has(id)).map((id) => {
    if (!productLookups.has(id)) {
      productLookups.set(id, json(`/products/${id}`).then((p) => productNames.set(id, p.name)).catch(() => {}));
    }
    return productLookups.get(id);
  }));
}

async function loadWarehouses() {
  let path = "/warehouses?limit=1000";
  while (path) {
    const response = await api(path);
    for (const w of await response.json()) warehouseNames.set(w.id, w.name);
    path = nextLink(response);
  }
  $("warehouse").append(...[...warehouseNames].map(([id, name]) => new Option(name, id)));
}

function cells(tr, values) {
  for (const value of values) {
    const td = document.createElement("td");
    td.textContent = value;
    tr.append(td);
  }
  return tr;
}

function pairRow(b, values) {
  const tr = cells(document.createElement("tr"), values);
  tr.className = "link";
  tr.dataset.product = b.product_id;
  tr.dataset.warehouse = b.warehouse_id;
  tr.addEventListener("click", () => showPair(b.product_id, b.warehouse_id));
  return tr;
}

const when = (iso) => new Date(iso).toLocaleString();
const hours = (seconds) => `${(seconds / 3600).toFixed(1)} h`;

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not a problem document */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

async function json(path) {
  return (await api(path)).json();
}

async function refreshCounts() {
  const [count, totals] = await Promise.all([json("/status-change-count"), json("/status-totals")]);
  $("counter").textContent = count.status_changes.toLocaleString("en");
  for (const status of Object.keys(LABELS)) {
    $(`total-${status}`).textContent = totals[status].toLocaleString("en");
  }
}

async function refreshChart() {
  const minutes = await json("/status-changes/per-minute?minutes=60");
  const labels = minutes.map((m) => new Date(m.minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
  const values = minutes.map((m) => m.changes);
  if (chart === null) {
    chart = new Chart($("chart"), {
      type: "bar",
      data: { labels, datasets: [{ label: "status changes", data: values, backgroundColor: "#3b5bdb" }] },
      options: {
        animation: false, maintainAspectRatio: false,
        plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  } else {
    chart.data.labels = labels;
    chart.data.datasets[0].data = values;
    chart.update();
  }
}

function nextLink(response) {
  const link = response.headers.get("Link");
  const match = link && link.match(/<([^>]+)>;\s*rel="next"/);
  return match ? match[1] : null;
}

async function showAttention(path) {
  const response = await api(path);
  const rows = await response.json();
  attentionNext = nextLink(response);
  $("attention-next").disabled = attentionNext === null;
  await knowProducts(rows.map((b) => b.product_id));
  $("attention").querySelector("tbody").replaceChildren(...rows.map((b) => pairRow(b, [
    productName(b.product_id), warehouseName(b.warehouse_id), b.quantity, LABELS[b.status],
    b.updated_at ? when(b.updated_at) : "never",
  ])));
}

function firstAttentionPage() {
  const warehouse = selectedWarehouse() ? `&warehouse_id=${selectedWarehouse()}` : "";
  return showAttention(`/balances?status=${$("attention-status").value}&limit=20${warehouse}`);
}

function setView(name) {
  for (const view of ["overview", "reports", "pair"]) $(view).hidden = view !== name;
  for (const button of document.querySelectorAll("nav button[data-view]")) {
    button.classList.toggle("current", button.dataset.view === name);
  }
}

// Product search: the products whose name contains the text, each with its balances (at the selected warehouse).
async function search(text) {
  const products = await json(`/products?name=${encodeURIComponent(text)}&limit=20`);
  for (const p of products) productNames.set(p.id, p.name);
  const warehouse = selectedWarehouse() ? `?warehouse_id=${selectedWarehouse()}` : "";
  const balances = await Promise.all(products.map((p) => json(`/balances/product/${p.id}${warehouse}`)));
  const rows = products.flatMap((p, i) => balances[i].length
    ? balances[i].map((b) => pairRow(b, [p.name, warehouseName(b.warehouse_id), b.quantity, LABELS[b.status]]))
    : [cells(document.createElement("tr"), [p.name, "", 0, "never stocked"])]);
  $("product-results").querySelector("tbody").replaceChildren(...rows);
  $("results-note").textContent = products.length ? "" : `No product's name contains "${text}".`;
  $("product-results").hidden = false;
}

// One pair: its balance and status, its last movements (the ledger) and its status history (the stored log).
async function showPair(product, warehouse) {
  await knowProducts([product]);
  setView("pair");
  $("pair-title").textContent = `${productName(product)} at ${warehouseName(warehouse)}`;
  for (const id of ["pair-balance", "pair-since"]) $(id).textContent = "…";
  for (const id of ["pair-movements", "pair-history"]) $(id).querySelector("tbody").replaceChildren();
  const filter = `product_id=${product}&warehouse_id=${warehouse}&limit=20`;
  const [balance, movements, history] = await Promise.all([
    json(`/balances/product/${product}/warehouse/${warehouse}`), json(`/operations?${filter}`),
    json(`/status-changes?${filter}`),
  ]);
  $("pair-balance").textContent = `${balance.quantity.toLocaleString("en")} — ${LABELS[balance.status]}`;
  $("pair-balance").dataset.status = balance.status;
  $("pair-since").textContent = balance.updated_at ? `last written ${when(balance.updated_at)}` : "never stocked";
  $("pair-movements").querySelector("tbody").replaceChildren(...movements.map((o) => cells(
    document.createElement("tr"),
    [when(o.created_at), o.operation_type.replace("_", " "), o.change > 0 ? `+${o.change}` : o.change, o.actor || ""],
  )));
  $("pair-history").querySelector("tbody").replaceChildren(...history.map((c) => cells(
    document.createElement("tr"),
    [when(c.occurred_at), `${LABELS[c.old_status]} → ${LABELS[c.new_status]}`, c.seq ?? ""],
  )));
}

// Reports: the period is whole days, UTC, the last one included.
function reportQuery() {
  const since = $("report-since").value;
  const until = new Date(`${$("report-until").value}T00:00:00Z`);
  until.setUTCDate(until.getUTCDate() + 1);
  const warehouse = selectedWarehouse() ? `&warehouse_id=${selectedWarehouse()}` : "";
  return `since=${since}T00:00:00Z&until=${until.toISOString()}${warehouse}`;
}

async function showReports() {
  $("report-error").textContent = "";
  const group = $("report-group").value;
  try {
    const [movements, outs] = await Promise.all([
      json(`/reports/movements?group_by=${group}&${reportQuery()}`), json(`/reports/stock-outs?limit=50&${reportQuery()}`),
    ]);
    await knowProducts(outs.map((s) => s.product_id));
    $("report-key").textContent = group;
    const columns = ["receipts", "shipments", "transfers_in", "transfers_out", "adjustments", "net"];
    const label = (m) => (group === "day" ? m.day : m.name);
    $("report-movements").querySelector("tbody").replaceChildren(...movements.map((m) => cells(
      document.createElement("tr"), [label(m), ...columns.map((c) => m[c].toLocaleString("en"))],
    )));
    const totals = columns.map((c) => movements.reduce((sum, m) => sum + m[c], 0).toLocaleString("en"));
    $("report-movements").querySelector("tfoot").replaceChildren(cells(document.createElement("tr"), ["total", ...totals]));
    $("report-stock-outs").querySelector("tbody").replaceChildren(...outs.map((s) => pairRow(s, [
      s.product_name, s.warehouse_name, hours(s.out_of_stock_seconds), hours(s.running_low_seconds), s.changes,
    ])));
    drawStockOuts(outs.slice(0, 10));
  } catch (error) {
    $("report-error").textContent = error.message;
  }
}

function drawStockOuts(outs) {
  const labels = outs.map((s) => `${s.product_name} at ${s.warehouse_name}`);
  const datasets = [
    { label: "out of stock (h)", data: outs.map((s) => s.out_of_stock_seconds / 3600), backgroundColor: "#b91c1c" },
    { label: "running low (h)", data: outs.map((s) => s.running_low_seconds / 3600), backgroundColor: "#d97706" },
  ];
  if (stockOutsChart === null) {
    stockOutsChart = new Chart($("stock-outs-chart"), {
      type: "bar", data: { labels, datasets },
      options: { indexAxis: "y", animation: false, maintainAspectRatio: false,
                 scales: { x: { stacked: true, beginAtZero: true }, y: { stacked: true } } },
    });
  } else {
    stockOutsChart.data.labels = labels;
    stockOutsChart.data.datasets = datasets;
    stockOutsChart.update();
  }
}

// A CSV of a report: fetched with the key (a plain link could not send it), then saved.
async function downloadCsv(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}`, Accept: "text/csv" } });
  if (!response.ok) { $("report-error").textContent = `${response.status}: CSV refused`; return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  link.click();
  URL.revokeObjectURL(link.href);
}

// Counts follow the live feed, but at most once a second with one request in flight: a busy warehouse makes
// hundreds of changes a second.
let countsDue = false;
let countsBusy = false;

async function countsSoon() {
  countsDue = true;
  if (countsBusy) return;
  countsBusy = true;
  while (countsDue) {
    countsDue = false;
    await refreshCounts().catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  countsBusy = false;
}

function listen() {
  const source = new EventSource(`/status-changes/stream?access_token=${encodeURIComponent(key)}`);
  source.onopen = () => { $("connection").textContent = "live"; };
  source.onerror = () => {
    // EventSource retries by itself, except after a refusal (a revoked key, a 503): then only a reload helps.
    $("connection").textContent = source.readyState === EventSource.CLOSED
      ? "live feed refused: reload the page" : "reconnecting…";
  };
  source.addEventListener("status-changed", (message) => {
    const event = JSON.parse(message.data);
    countsSoon();
    if (selectedWarehouse() && Number(selectedWarehouse()) !== event.warehouse_id) return;
    const li = document.createElement("li");
    li.dataset.eventId = event.event_id;
    li.dataset.product = event.product_id;
    const show = () => {
      li.textContent = `${new Date(event.occurred_at).toLocaleTimeString()} ${productName(event.product_id)} ` +
        `(${warehouseName(event.warehouse_id)}): ${LABELS[event.old_status]} → ${LABELS[event.new_status]}`;
    };
    show();
    if (!productNames.has(event.product_id)) knowProducts([event.product_id]).then(show);
    $("feed").prepend(li);
    while ($("feed").children.length > FEED_LENGTH) $("feed").lastChild.remove();
  });
  source.addEventListener("closed", (message) => {
    $("connection").textContent = `dropped: ${JSON.parse(message.data).reason}`;
  });
}

async function start() {
  try {
    await refreshCounts();
  } catch (error) {
    sessionStorage.removeItem("warehouse-tracker-key");
    $("login").hidden = false;
    $("login-error").textContent = `That key does not work (${error.message}).`;
    return;
  }
  sessionStorage.setItem("warehouse-tracker-key", key);
  $("login").hidden = true;
  $("board").hidden = false;
  listen();
  await loadWarehouses().catch(() => {});
  await Promise.all([refreshChart(), firstAttentionPage()]);
  setInterval(() => { refreshCounts().catch(() => {}); refreshChart().catch(() => {}); }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => { e.preventDefault(); key = $("key").value.trim(); start(); });
  $("attention-status").addEventListener("change", () => firstAttentionPage());
  $("attention-first").addEventListener("click", () => firstAttentionPage());
  $("attention-next").addEventListener("click", () => attentionNext && showAttention(attentionNext));
  $("warehouse").addEventListener("change", () => {
    $("feed").replaceChildren();
    firstAttentionPage();
    if (!$("reports").hidden) showReports();
  });
  for (const button of document.querySelectorAll("nav button[data-view]")) {
    button.addEventListener("click", () => {
      setView(button.dataset.view);
      if (button.dataset.view === "reports") showReports();
    });
  }
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("product-search").value.trim();
    if (text) search(text).catch((error) => { $("results-note").textContent = error.message; });
  });
  $("close-results").addEventListener("click", () => { $("product-results").hidden = true; });
  const today = new Date();
  $("report-until").value = today.toISOString().slice(0, 10);
  today.setUTCDate(today.getUTCDate() - 29);
  $("report-since").value = today.toISOString().slice(0, 10);
  $("report-form").addEventListener("submit", (e) => { e.preventDefault(); showReports(); });
  $("movements-csv").addEventListener("click", () => downloadCsv(
    `/reports/movements?group_by=${$("report-group").value}&${reportQuery()}`, "movements.csv"));
  $("stock-outs-csv").addEventListener("click", () => downloadCsv(`/reports/stock-outs?${reportQuery()}`, "stock-outs.csv"));
  // A key in the fragment (#key=…) never reaches a server log; it is taken and removed from the address bar.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) history.replaceState(null, "", location.pathname);
  key = fromHash || sessionStorage.getItem("warehouse-tracker-key") || "";
  if (key) start(); else $("login").hidden = false;
});

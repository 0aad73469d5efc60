// The dashboard: everything comes from the API with the key the user gives (kept for this tab only).
"use strict";

const LABELS = { available: "available", running_low: "running low", out_of_stock: "out of stock" };
const FEED_LENGTH = 50;
const REFRESH_MS = 10000;
let key = "";
let chart = null;
let attentionNext = null;

const $ = (id) => document.getElementById(id);

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
  const body = $("attention").querySelector("tbody");
  body.replaceChildren(...rows.map((b) => {
    const tr = document.createElement("tr");
    for (const value of [b.product_id, b.warehouse_id, b.quantity, LABELS[b.status],
                         b.updated_at ? new Date(b.updated_at).toLocaleString() : "never"]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.append(td);
    }
    return tr;
  }));
}

function firstAttentionPage() {
  return showAttention(`/balances?status=${$("attention-status").value}&limit=20`);
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
    const li = document.createElement("li");
    li.dataset.eventId = event.event_id;
    li.dataset.product = event.product_id;
    li.textContent = `${new Date(event.occurred_at).toLocaleTimeString()} product ${event.product_id} ` +
      `(warehouse ${event.warehouse_id}): ${LABELS[event.old_status]} → ${LABELS[event.new_status]}`;
    $("feed").prepend(li);
    while ($("feed").children.length > FEED_LENGTH) $("feed").lastChild.remove();
    countsSoon();
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
  await Promise.all([refreshChart(), firstAttentionPage()]);
  setInterval(() => { refreshCounts().catch(() => {}); refreshChart().catch(() => {}); }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => { e.preventDefault(); key = $("key").value.trim(); start(); });
  $("attention-status").addEventListener("change", () => firstAttentionPage());
  $("attention-first").addEventListener("click", () => firstAttentionPage());
  $("attention-next").addEventListener("click", () => attentionNext && showAttention(attentionNext));
  // A key in the fragment (#key=…) never reaches a server log; it is taken and removed from the address bar.
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) history.replaceState(null, "", location.pathname);
  key = fromHash || sessionStorage.getItem("warehouse-tracker-key") || "";
  if (key) start(); else $("login").hidden = false;
});

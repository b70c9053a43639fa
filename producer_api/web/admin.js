// Admin (an admin key only): services, workers and their model pools, projector and
// notifier lag from /admin/health; dead letters from /admin/errors, resolve and redrive.
import { getJson, request } from "./api.js";
import { announce, h, when } from "./dom.js";

const REFRESH_MS = 5000;

function check(name, result) {
  return h("li", { dataset: { dependency: name } }, h("span.badge", { class: `badge health-${result.status}` }, result.status), ` ${name} · ${result.latency_ms} ms`, result.detail ? h("span.error", {}, ` ${result.detail}`) : null);
}

function lagText(lag) {
  if (!lag || lag.total_lag === null || lag.total_lag === undefined) return "not measured yet";
  return `${lag.total_lag} events behind (${lag.partitions.length} partitions)`;
}

function workersTable(workers) {
  const rows = [...workers.live.map((w) => [w, "live"]), ...workers.stale.map((w) => [w, "stale"])];
  if (!rows.length) return h("p.empty", {}, workers.reading ? "No worker has sent a heartbeat." : "Heartbeats are not being read yet.");
  return h(
    "div.table-wrap",
    {},
    h(
      "table.workers",
      {},
      h("thead", {}, h("tr", {}, ...["Worker", "State", "In flight", "Processed", "Failed", "Pool hits", "Misses", "Hit rate", "Evictions", "Loads", "Loaded models", "Last seen"].map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        ...rows.map(([w, state]) => {
          const pool = w.model_pool;
          return h(
            "tr",
            { dataset: { workerId: w.worker_id } },
            h("th", { scope: "row", "data-label": "Worker" }, w.worker_id),
            h("td", { "data-label": "State" }, state),
            h("td", { "data-label": "In flight" }, `${w.in_flight}/${w.concurrency}`),
            h("td", { "data-label": "Processed" }, String(w.processed)),
            h("td", { "data-label": "Failed" }, String(w.failed)),
            h("td", { "data-label": "Pool hits", dataset: { stat: "hits" } }, String(pool.hits)),
            h("td", { "data-label": "Misses", dataset: { stat: "misses" } }, String(pool.misses)),
            h("td", { "data-label": "Hit rate" }, pool.hit_rate === null ? "–" : `${Math.round(pool.hit_rate * 100)}%`),
            h("td", { "data-label": "Evictions" }, String(pool.evictions)),
            h("td", { "data-label": "Loads" }, `${pool.loads} (${Number(pool.load_seconds).toFixed(1)} s)`),
            h("td", { "data-label": "Loaded models" }, (pool.loaded_models || []).join(", ") || "–"),
            h("td", { "data-label": "Last seen" }, when(w.last_seen)),
          );
        }),
      ),
    ),
  );
}

function healthView(report) {
  const services = report.supervisor?.services;
  return [
    h(
      "section.card",
      { "aria-labelledby": "health-title" },
      h("h1", { id: "health-title" }, "System ", h("span.badge", { class: `badge health-${report.status}` }, report.status)),
      h("h2", {}, "Dependencies"),
      h("ul.checks", {}, ...Object.entries(report.dependencies).map(([name, result]) => check(name, result))),
      services ? h("h2", {}, "Services") : null,
      services ? h("ul.checks", {}, ...Object.entries(services).map(([name, s]) => h("li", { dataset: { service: name } }, h("span", { class: `badge health-${s.running ? "ok" : "error"}` }, s.running ? "running" : "down"), ` ${name} · pid ${s.pid ?? "–"} · ${s.restarts} restarts`, s.last_exit ? ` · last exit: ${s.last_exit}` : ""))) : null,
      h("h2", {}, "Projector and notifier"),
      h(
        "dl.facts",
        {},
        h("dt", {}, "Projector lag"),
        h("dd", { id: "projector-lag" }, lagText(report.projector.lag)),
        h("dt", {}, "Projector last applied"),
        h("dd", {}, when(report.projector.last_applied_at)),
        h("dt", {}, "Notifier lag"),
        h("dd", { id: "notifier-lag" }, lagText(report.notifier.lag)),
        h("dt", {}, "Webhooks pending"),
        h("dd", {}, report.notifier.pending_deliveries ?? "–"),
      ),
    ),
    h("section.card", { "aria-labelledby": "workers-title" }, h("h2", { id: "workers-title" }, "Workers"), workersTable(report.workers)),
  ];
}

function deadLetters(page, reload) {
  async function act(entry, action, button) {
    button.disabled = true;
    try {
      const result = await (await request(`/admin/errors/${entry.id}/${action}`, { method: "POST" })).json();
      announce(action === "redrive" ? `Redriven as job ${result.new_job_id}` : `Error ${entry.id} resolved`);
      await reload();
    } catch (error) {
      button.disabled = false;
      button.after(h("span.error", { role: "alert" }, ` ${error.message}`));
    }
  }
  const rows = page.items.map((entry) =>
    h(
      "tr",
      { dataset: { errorId: entry.id } },
      h("th", { scope: "row", "data-label": "Id" }, String(entry.id)),
      h("td", { "data-label": "Job" }, entry.job_id ? h("a", { href: `#/jobs/${entry.job_id}` }, entry.job_id.slice(0, 8)) : "–"),
      h("td", { "data-label": "Type" }, entry.error_type),
      h("td.message", { "data-label": "Message" }, entry.error_message),
      h("td", { "data-label": "Retries" }, String(entry.retry_count)),
      h("td", { "data-label": "When" }, when(entry.created_at)),
      h(
        "td.actions",
        {},
        entry.resolved
          ? "resolved"
          : [
              h("button.secondary", { type: "button", on: { click: (e) => act(entry, "redrive", e.currentTarget) } }, "Redrive"),
              h("button.secondary", { type: "button", on: { click: (e) => act(entry, "resolve", e.currentTarget) } }, "Resolve"),
            ],
      ),
    ),
  );
  return h(
    "section.card",
    { "aria-labelledby": "errors-title" },
    h("h2", { id: "errors-title" }, "Dead letters"),
    rows.length
      ? h("div.table-wrap", {}, h("table.errors", {}, h("thead", {}, h("tr", {}, ...["Id", "Job", "Type", "Message", "Retries", "When"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))), h("tbody", {}, ...rows)))
      : h("p.empty", {}, "No unresolved dead letters."),
  );
}

export async function renderAdmin(context) {
  const { main, signal, isAdmin } = context;
  if (!isAdmin) {
    main.replaceChildren(h("div.card", {}, h("h1", {}, "Admin"), h("p", {}, "This view needs an admin API key.")));
    return;
  }
  // health refreshes by itself; the dead letters only on an action or a click, so a
  // keyboard user's place in that list is not swept away under them
  const health = h("div.stack", { id: "health" });
  const letters = h("div", { id: "dead-letters" });
  async function refreshHealth() {
    const report = await getJson("/admin/health", { signal });
    if (!signal.aborted) health.replaceChildren(...healthView(report));
  }
  async function refreshLetters() {
    const errors = await getJson("/admin/errors?resolved=false&limit=50", { signal });
    if (signal.aborted) return;
    const section = deadLetters(errors, refreshLetters);
    section.querySelector("h2").after(h("button.secondary", { type: "button", on: { click: () => refreshLetters().catch(() => {}) } }, "Refresh"));
    letters.replaceChildren(section);
  }
  await Promise.all([refreshHealth(), refreshLetters()]);
  main.replaceChildren(health, letters);
  const timer = setInterval(() => refreshHealth().catch(() => {}), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

// The key's jobs, newest first, a page at a time, kept current by /jobs/events.
import { ApiError, followEvents, getJson, request } from "./api.js";
import { TERMINAL, announce, h, seconds, statusBadge, when } from "./dom.js";

const PAGE_SIZES = [5, 20, 50, 100];
const STATUSES = ["pending", "processing", "retrying", "completed", "failed", "cancelled"];

function mergeEvent(job, data) {
  // an event can be older than what the row already shows (a resumed stream)
  if (TERMINAL.has(job.status) && !TERMINAL.has(data.status)) return job;
  const merged = { ...job, status: data.status, progress: data.progress, attempts: data.attempt ?? job.attempts };
  if (data.model) merged.model_used = data.model;
  if (data.error) merged.error = data.error;
  if (data.result) merged.result = { ...(job.result || {}), ...data.result };
  if (data.status === "processing" && !job.started_at) merged.started_at = data.occurred_at;
  if (TERMINAL.has(data.status)) merged.completed_at = data.occurred_at;
  return merged;
}

export async function renderJobs(context) {
  let filter = "";
  let pageSize = 20;
  let cursors = [null]; // the cursor of each page shown so far
  let page = 0;
  let nextCursor = null;
  const jobs = new Map(); // job_id -> job view, for the rows on screen
  const lookedUp = new Set(); // unknown jobs the stream named, fetched once each
  const body = h("tbody");
  const status = h("p.stream-state", { id: "stream-state" }, "connecting…");
  const prev = h("button.secondary", { type: "button", disabled: true, on: { click: () => load(page - 1) } }, "Newer");
  const next = h("button.secondary", { type: "button", disabled: true, on: { click: () => load(page + 1) } }, "Older");
  const pageLabel = h("span.page", { "aria-live": "polite" });
  const filterSelect = h(
    "select",
    {
      id: "status-filter",
      on: {
        change: () => {
          filter = filterSelect.value;
          cursors = [null];
          load(0);
        },
      },
    },
    h("option", { value: "" }, "All"),
    ...STATUSES.map((s) => h("option", { value: s }, s)),
  );

  const sizeSelect = h(
    "select",
    {
      id: "page-size",
      on: {
        change: () => {
          pageSize = Number(sizeSelect.value);
          cursors = [null];
          load(0);
        },
      },
    },
    ...PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === pageSize }, String(n))),
  );

  async function cancel(job, button) {
    button.disabled = true;
    try {
      await request(`/transcribe/${job.job_id}`, { method: "DELETE" });
      button.textContent = "Cancelling…";
      announce(`Cancel requested for ${job.original_filename || job.job_id}`);
    } catch (error) {
      button.disabled = false;
      announce(`The job could not be cancelled: ${error.message}`);
      button.after(h("span.error", { role: "alert" }, error.message));
    }
  }

  function row(job) {
    const name = job.original_filename || job.job_id.slice(0, 8);
    const progress = h("progress", { max: 1, value: job.progress ?? 0, "aria-label": `Progress of ${name}` });
    const actions = h("td.actions", {});
    if (!TERMINAL.has(job.status)) {
      const button = h("button.secondary.cancel", { type: "button", "aria-label": `Cancel ${name}` }, job.cancel_requested_at ? "Cancelling…" : "Cancel");
      button.addEventListener("click", () => cancel(job, button));
      button.disabled = Boolean(job.cancel_requested_at);
      actions.append(button);
    }
    return h(
      "tr",
      { dataset: { jobId: job.job_id, status: job.status } },
      h("th", { scope: "row", "data-label": "File" }, h("a", { href: `#/jobs/${job.job_id}` }, name)),
      h("td", { "data-label": "Status" }, statusBadge(job.status)),
      h("td", { "data-label": "Progress" }, h("span.progress-cell", {}, progress, h("span.pct", {}, `${Math.round((job.progress ?? 0) * 100)}%`))),
      h("td", { "data-label": "Duration" }, seconds(job.result?.duration)),
      h("td", { "data-label": "Model" }, job.model_used || job.model || "–"),
      h("td", { "data-label": "Created" }, when(job.created_at)),
      h("td", { "data-label": "Finished" }, when(job.completed_at)),
      actions,
    );
  }

  function show(job) {
    const current = jobs.get(job.job_id);
    if (current && TERMINAL.has(current.status) && !TERMINAL.has(job.status)) return;
    jobs.set(job.job_id, job);
    const fresh = row(job);
    const old = body.querySelector(`tr[data-job-id="${job.job_id}"]`);
    if (old) {
      // keep the focus on a row's cancel button when the row is redrawn
      const focused = old.contains(document.activeElement) ? document.activeElement.className : null;
      old.replaceWith(fresh);
      if (focused) fresh.querySelector(`[class="${focused}"]`)?.focus();
    } else {
      body.prepend(fresh);
    }
    empty.hidden = jobs.size > 0;
  }

  const empty = h("p.empty", { hidden: true }, "No jobs yet. Drop a file above to start one.");

  async function load(index) {
    const cursor = cursors[index];
    const query = new URLSearchParams({ limit: String(pageSize) });
    if (filter) query.set("status", filter);
    if (cursor) query.set("cursor", cursor);
    const result = await getJson(`/jobs?${query}`);
    page = index;
    nextCursor = result.next_cursor;
    cursors[index + 1] = nextCursor;
    jobs.clear();
    body.replaceChildren(...result.items.map((job) => (jobs.set(job.job_id, job), row(job))));
    empty.hidden = jobs.size > 0;
    prev.disabled = page === 0;
    next.disabled = !nextCursor;
    pageLabel.textContent = `Page ${page + 1}`;
  }

  async function onEvent(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    const known = jobs.get(data.job_id);
    if (known) {
      show(mergeEvent(known, data));
      return;
    }
    // a job this list has not shown yet: a new one belongs at the top of the first page;
    // each is looked up once (an admin's stream carries every job of the system)
    if (page !== 0 || (filter && filter !== data.status) || lookedUp.has(data.job_id)) return;
    lookedUp.add(data.job_id);
    try {
      const job = await getJson(`/transcribe/${data.job_id}`, { signal: context.signal });
      if (isNewer(job)) show(mergeEvent(job, data));
    } catch {
      // not projected yet (its next event tries again), or another key's
      lookedUp.delete(data.job_id);
    }
  }

  function isNewer(job) {
    // older jobs than the first page's are on later pages, not at its top
    const times = [...jobs.values()].map((j) => j.created_at).filter(Boolean).sort();
    return !times.length || !nextCursor || (job.created_at && job.created_at >= times[0]);
  }

  await load(0);
  followEvents("/jobs/events", onEvent, {
    signal: context.signal,
    onState: (state) => {
      status.textContent = { live: "live", reconnecting: "reconnecting…", ended: "not live" }[state];
      status.dataset.state = state;
    },
  }).catch((error) => {
    status.textContent = error instanceof ApiError ? `not live: ${error.message}` : "not live";
  });

  const element = h(
    "section.card",
    { "aria-labelledby": "jobs-title" },
    h(
      "div.heading",
      {},
      h("h2", { id: "jobs-title" }, "Jobs"),
      status,
      h("div.field.inline", {}, h("label", { for: "status-filter" }, "Status"), filterSelect),
    ),
    h(
      "div.table-wrap",
      {},
      h(
        "table.jobs",
        {},
        h("thead", {}, h("tr", {}, ...["File", "Status", "Progress", "Duration", "Model", "Created", "Finished"].map((t) => h("th", { scope: "col" }, t)), h("th", { scope: "col" }, h("span.visually-hidden", {}, "Actions")))),
        body,
      ),
    ),
    empty,
    h("div.pager", {}, h("div.field.inline", {}, h("label", { for: "page-size" }, "Per page"), sizeSelect), prev, pageLabel, next),
  );
  return {
    element,
    async added(jobId) {
      if (jobs.has(jobId) || page !== 0 || (filter && filter !== "pending")) return;
      try {
        const job = await getJson(`/transcribe/${jobId}`);
        if (!jobs.has(jobId)) show(job);
      } catch {
        // the live stream will bring it
      }
    },
  };
}

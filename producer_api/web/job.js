// One job: its state, the transcript against the audio, downloads, and its error.
import { ApiError, followEvents, getJson, request } from "./api.js";
import { TERMINAL, announce, bytes, h, seconds, statusBadge, timestamp, when } from "./dom.js";

const DOWNLOADS = [
  ["txt", "text"],
  ["srt", "srt"],
  ["vtt", "vtt"],
  ["tsv", "tsv"],
  ["json", "json"],
];

function baseName(job) {
  const name = job.original_filename || job.job_id;
  return name.replace(/\.[^.]+$/, "") || job.job_id;
}

async function download(job, extension, format, button) {
  button.disabled = true;
  try {
    const blob = await (await request(`/transcribe/${job.job_id}?format=${format}`)).blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `${baseName(job)}.${extension}`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    announce(`The download failed: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function facts(job) {
  const rows = [
    ["Status", statusBadge(job.status)],
    ["File", `${job.original_filename || "–"} (${bytes(job.size_bytes)})`],
    ["Model", job.model_used || job.model || "–"],
    ["Engine", job.result?.engine || job.engine || "server default"],
    ["Language", job.result?.language || job.language || "detect"],
    ["Task", job.task || "–"],
    ["Priority", job.priority || "–"],
    ["Attempts", String(job.attempts ?? 0)],
    ["Audio length", seconds(job.result?.duration)],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.completed_at)],
  ];
  return h("dl.facts", {}, ...rows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

function transcriptView(job, document, audio) {
  const segments = document.segments || [];
  const items = segments.map((segment, index) =>
    h(
      "li",
      {},
      h(
        "button.segment",
        {
          type: "button",
          dataset: { start: segment.start, end: segment.end, index },
          "aria-label": `Play from ${timestamp(segment.start)}: ${segment.text.trim()}`,
          on: {
            click: () => {
              audio.currentTime = segment.start;
              audio.play().catch(() => {}); // autoplay rules may refuse: the seek stands
            },
          },
        },
        h("span.time", {}, `${timestamp(segment.start)} → ${timestamp(segment.end)}`),
        h("span.text", {}, segment.text.trim()),
      ),
    ),
  );
  const list = h("ol.segments", { "aria-label": "Transcript segments" }, ...items);
  let current = -1;
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    const index = segments.findIndex((s) => t >= s.start && t < s.end);
    if (index === current) return;
    list.querySelector("[aria-current]")?.removeAttribute("aria-current");
    current = index;
    if (index >= 0) {
      const button = list.querySelectorAll("button.segment")[index];
      button.setAttribute("aria-current", "true");
      if (!audio.paused) button.scrollIntoView({ block: "nearest" });
    }
  });
  const text = segments.map((s) => s.text.trim()).filter(Boolean).join(" "); // as ?format=text
  const copy = h("button.secondary", { type: "button", id: "copy-text" }, "Copy text");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(text);
      announce("Transcript copied");
      copy.textContent = "Copied";
    } catch {
      announce("The browser refused the clipboard");
    }
  });
  const downloads = DOWNLOADS.map(([extension, format]) => {
    const button = h("button.secondary", { type: "button", dataset: { format: extension } }, extension.toUpperCase());
    button.addEventListener("click", () => download(job, extension, format, button));
    return button;
  });
  return h(
    "section.card",
    { "aria-labelledby": "transcript-title" },
    h("div.heading", {}, h("h2", { id: "transcript-title" }, "Transcript"), h("div.actions", { role: "group", "aria-label": "Downloads" }, ...downloads, copy)),
    list,
  );
}

function errorView(job) {
  return h(
    "section.card.failure",
    { "aria-labelledby": "error-title" },
    h("h2", { id: "error-title" }, job.status === "cancelled" ? "Cancelled" : "Failed"),
    job.error ? h("p", {}, h("strong", {}, job.error.type || "error"), ": ", job.error.message || "") : h("p", {}, "No error was recorded."),
    h("p", {}, `Attempts: ${job.attempts ?? 0}`),
  );
}

async function audioPlayer(job) {
  const audio = h("audio", { id: "player", controls: true, preload: "metadata" });
  try {
    const { url } = await getJson(`/transcribe/${job.job_id}/audio`);
    audio.src = url;
  } catch (error) {
    return { audio, element: h("p.error", {}, `The audio cannot be played: ${error.message}`) };
  }
  return { audio, element: h("figure.player", {}, audio, h("figcaption.visually-hidden", {}, "The job's audio")) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The job's row (result summary, times) once the projector has applied the terminal
 * event the stream sent; it trails the stream by a moment. What the event said wins.
 */
async function projectedRow(job, data) {
  let row = null;
  for (let attempt = 0; attempt < 20; attempt += 1) {
    try {
      row = await getJson(`/transcribe/${job.job_id}`);
      if (row.status === data.status) return row;
    } catch {
      // keep what the event said
    }
    await sleep(500);
  }
  return { ...(row || job), status: data.status, error: data.error ?? job.error, result: { ...(row || job).result, ...data.result } };
}

async function resultDocument(jobId) {
  // right after the terminal event the job's row may not say completed yet (409)
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await getJson(`/transcribe/${jobId}?format=json`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 409) || attempt >= 20) throw error;
      await sleep(500);
    }
  }
}

export async function renderJob(context, jobId) {
  const { main, signal } = context;
  let job;
  try {
    job = await getJson(`/transcribe/${jobId}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      main.replaceChildren(h("div.card", {}, h("h1", {}, "No such job"), h("p", {}, error.message), h("a", { href: "#/" }, "Back to the jobs")));
      return;
    }
    throw error;
  }

  const heading = h("h1", { id: "job-title" }, job.original_filename || job.job_id);
  const progress = h("progress", { max: 1, value: job.progress ?? 0, "aria-label": "Progress" });
  const summary = h("section.card", { "aria-labelledby": "job-title" }, h("p", {}, h("a", { href: "#/" }, "← Jobs")), heading, progress, facts(job));
  main.replaceChildren(summary);
  main.focus();

  async function showResult() {
    const parts = [];
    if (job.status === "completed") {
      const [document, player] = await Promise.all([resultDocument(jobId), audioPlayer(job)]);
      parts.push(h("section.card", { "aria-label": "Audio" }, player.element), transcriptView(job, document, player.audio));
    } else if (job.status === "failed" || job.status === "cancelled") {
      parts.push(errorView(job));
    }
    progress.value = job.progress ?? 0;
    summary.querySelector("dl").replaceWith(facts(job));
    main.replaceChildren(summary, ...parts);
  }

  if (TERMINAL.has(job.status)) {
    await showResult();
    return;
  }
  followEvents(
    `/transcribe/${jobId}/events`,
    async (event) => {
      const data = JSON.parse(event.data);
      job = { ...job, status: data.status, progress: data.progress, attempts: data.attempt ?? job.attempts, error: data.error ?? job.error };
      progress.value = data.status === "completed" ? 1 : data.progress;
      summary.querySelector("dl").replaceWith(facts(job));
      if (TERMINAL.has(data.status)) {
        job = await projectedRow(job, data);
        announce(`The job is ${data.status}`);
        await showResult();
      }
    },
    { signal },
  ).catch(() => {});
}

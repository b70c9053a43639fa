// Upload: drop or pick several files; each one is its own POST /transcribe with its
// own progress bar, and a refused file shows the server's problem detail beside it.
import { getJson, upload } from "./api.js";
import { announce, bytes, h } from "./dom.js";

const SERVER_DEFAULT = "";

async function installedModels() {
  try {
    const list = await getJson("/v1/models");
    // whisper-1 is OpenAI's alias for the server's default, offered as "server default"
    return list.data.map((m) => m.id).filter((id) => id !== "whisper-1");
  } catch {
    return [];
  }
}

function select(id, label, options, value) {
  return h(
    "div.field",
    {},
    h("label", { for: id }, label),
    h("select", { id, name: id }, ...options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))),
  );
}

function checkbox(id, label, help) {
  return h(
    "div.field.check",
    {},
    h("input", { id, name: id, type: "checkbox", "aria-describedby": `${id}-help` }),
    h("label", { for: id }, label),
    h("span.help", { id: `${id}-help` }, help),
  );
}

function optionsOf(form) {
  const fields = {};
  const model = form.querySelector("#opt-model").value;
  if (model !== SERVER_DEFAULT) fields.model = model;
  const engine = form.querySelector("#opt-engine").value;
  if (engine !== SERVER_DEFAULT) fields.engine = engine;
  const language = form.querySelector("#opt-language").value.trim();
  if (language) fields.language = language;
  fields.task = form.querySelector("#opt-task").value;
  fields.priority = form.querySelector("#opt-priority").value;
  fields.word_timestamps = String(form.querySelector("#opt-words").checked);
  fields.vad_filter = String(form.querySelector("#opt-vad").checked);
  return fields;
}

function fileRow(file) {
  const progress = h("progress", { max: file.size || 1, value: 0, "aria-label": `Upload of ${file.name}` });
  const state = h("span.upload-state", {}, "waiting");
  const row = h(
    "li.upload",
    { dataset: { file: file.name } },
    h("span.upload-name", {}, file.name),
    h("span.upload-size", {}, bytes(file.size)),
    progress,
    state,
  );
  return { row, progress, state };
}

export async function renderUpload(context, onAccepted) {
  const models = await installedModels();
  const list = h("ul.uploads", { "aria-label": "Uploads" });
  // the button opens the (hidden) native picker: one control to reach by keyboard
  const picker = h("input", { id: "file-input", type: "file", multiple: true, accept: "audio/*,video/*", hidden: true, tabindex: -1 });
  const form = h(
    "div.options",
    {},
    select("opt-model", "Model", [[SERVER_DEFAULT, "Server default"], ...models.map((m) => [m, m])], SERVER_DEFAULT),
    select("opt-engine", "Engine", [[SERVER_DEFAULT, "Server default"], ["faster-whisper", "faster-whisper"], ["openai-whisper", "openai-whisper"]], SERVER_DEFAULT),
    h(
      "div.field",
      {},
      h("label", { for: "opt-language" }, "Language"),
      h("input", { id: "opt-language", name: "opt-language", placeholder: "detect", pattern: "[a-z]{2,3}", size: 6, "aria-describedby": "opt-language-help" }),
      h("span.help", { id: "opt-language-help" }, "ISO code such as en; empty to detect"),
    ),
    select("opt-task", "Task", [["transcribe", "Transcribe"], ["translate", "Translate to English"]], "transcribe"),
    select("opt-priority", "Priority", [["normal", "Normal"], ["high", "High"]], "normal"),
    checkbox("opt-words", "Word timestamps", "a time for every word"),
    checkbox("opt-vad", "Voice activity filter", "skip silence and noise"),
  );

  async function send(files) {
    const fields = optionsOf(form);
    const rows = [...files].map((file) => ({ file, ...fileRow(file) }));
    list.prepend(...rows.map((r) => r.row));
    // one at a time keeps each progress bar honest; a refusal does not stop the others
    for (const { file, row, progress, state } of rows) {
      state.textContent = "uploading";
      try {
        const accepted = await upload(file, fields, (sent, total) => {
          progress.max = total;
          progress.value = sent;
        });
        progress.value = progress.max;
        row.classList.add("done");
        state.replaceChildren("queued · ", h("a", { href: `#/jobs/${accepted.job_id}` }, "open"));
        row.dataset.jobId = accepted.job_id;
        onAccepted(accepted);
        announce(`${file.name} uploaded`);
      } catch (error) {
        row.classList.add("refused");
        const title = error.problem?.title ? `${error.problem.title}: ` : "";
        state.replaceChildren(h("span.error", { role: "alert" }, `${title}${error.message}`));
        announce(`${file.name} was refused: ${error.message}`);
      }
    }
  }

  picker.addEventListener("change", () => {
    if (picker.files.length) send(picker.files);
    picker.value = "";
  });
  const zone = h(
    "div.drop",
    {
      id: "drop-zone",
      on: {
        dragover: (event) => {
          event.preventDefault();
          zone.classList.add("over");
        },
        dragleave: () => zone.classList.remove("over"),
        drop: (event) => {
          event.preventDefault();
          zone.classList.remove("over");
          if (event.dataTransfer?.files.length) send(event.dataTransfer.files);
        },
      },
    },
    h("p", {}, "Drop audio or video files here, or"),
    h("button", { type: "button", id: "choose-files", on: { click: () => picker.click() } }, "Choose files…"),
    picker,
  );
  return h("section.card", { "aria-labelledby": "upload-title" }, h("h1", { id: "upload-title" }, "Transcribe"), form, zone, list);
}

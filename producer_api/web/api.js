// The API as the page uses it: the key from localStorage on every request, problem
// details turned into errors, uploads through XMLHttpRequest (it reports upload
// progress, fetch does not) and Server-Sent Events read with fetch (EventSource cannot
// send an Authorization header).

const KEY_STORAGE = "whisperstream.apiKey";

export function storedKey() {
  return localStorage.getItem(KEY_STORAGE);
}

export function storeKey(key) {
  localStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  localStorage.removeItem(KEY_STORAGE);
}

/** An error answer of the API, with its problem detail (RFC 9457) when it sent one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function problemOf(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") {
      // the /v1 routes answer in OpenAI's shape
      if (body.error && typeof body.error === "object") return { title: body.error.type, detail: body.error.message };
      return body;
    }
  } catch {
    // not JSON: a proxy's page, say
  }
  return { title: `HTTP ${status}`, detail: text.slice(0, 300) || `HTTP ${status}` };
}

function authHeaders(key = storedKey()) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch() with the key; an error status throws ApiError. */
export async function request(path, { method = "GET", json, key, signal } = {}) {
  const headers = authHeaders(key);
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body, signal });
  if (!response.ok) throw new ApiError(response.status, problemOf(response.status, await response.text()));
  return response;
}

export async function getJson(path, options) {
  return (await request(path, options)).json();
}

export async function getText(path, options) {
  return (await request(path, options)).text();
}

/**
 * POST /transcribe as multipart with the file and the options; onProgress(sent, total)
 * as the body goes out. Resolves with the accepted job, rejects with ApiError.
 */
export function upload(file, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("file", file, file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/transcribe");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(new ApiError(xhr.status, problemOf(xhr.status, xhr.responseText)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { detail: "the upload failed: the API could not be reached" })));
    xhr.send(form);
  });
}

/** Split a text/event-stream body into events, as EventSource would. */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
    this.lastId = null;
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = undefined;
  }

  push(text) {
    this.buffer += text;
    // a CR that ends a chunk may be the first half of a CRLF: wait for the next one
    const end = this.buffer.endsWith("\r") ? this.buffer.length - 1 : this.buffer.length;
    const lines = this.buffer.slice(0, end).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + this.buffer.slice(end);
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.id !== undefined) this.lastId = this.id;
      if (this.data.length) this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastId });
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

/**
 * Follow an SSE route until `signal` aborts: onEvent({type, data, id}) for each event,
 * resuming with Last-Event-ID after a break. onState("live" | "reconnecting" | "ended").
 */
export async function followEvents(path, onEvent, { signal, onState = () => {} } = {}) {
  let lastId = null;
  let delayMs = 1000;
  while (!signal.aborted) {
    try {
      const headers = { ...authHeaders(), Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(path, { headers, signal });
      if (response.status === 204) {
        onState("ended");
        return;
      }
      if (!response.ok) throw new ApiError(response.status, problemOf(response.status, await response.text()));
      onState("live");
      delayMs = 1000;
      const parser = new SseParser((event) => {
        lastId = event.id ?? lastId;
        onEvent(event);
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
      // a job's stream ends after its terminal event; /jobs/events never ends by itself
      if (!path.startsWith("/jobs/")) {
        onState("ended");
        return;
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        onState("ended");
        throw error;
      }
      // an id the server no longer takes (a topic recreated, say): start afresh
      if (error instanceof ApiError && (error.status === 400 || error.status === 422)) lastId = null;
    }
    onState("reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    delayMs = Math.min(delayMs * 2, 15000);
  }
}

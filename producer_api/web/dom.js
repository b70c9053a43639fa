// Small helpers: elements are built with textContent, never innerHTML, so text from
// the API (file names, transcripts, errors) can never become markup.

/** h("tag.class", {attributes, on: {event: fn}}, ...children) */
export function h(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag);
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node && !name.includes("-") && name !== "list") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export function announce(text) {
  const region = document.getElementById("announce");
  region.textContent = "";
  // a fresh text node each time, so screen readers read a repeated message too
  setTimeout(() => (region.textContent = text), 50);
}

export function seconds(value) {
  if (value === null || value === undefined) return "–";
  const total = Math.round(value);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h ? `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}` : `${m}:${String(s).padStart(2, "0")}`;
}

export function timestamp(value) {
  const whole = Math.floor(value);
  const ms = Math.round((value - whole) * 1000);
  return `${seconds(whole)}.${String(ms).padStart(3, "0").slice(0, 2)}`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function bytes(size) {
  if (size === null || size === undefined) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function statusBadge(status) {
  return h(`span.badge.status-${status}`, { dataset: { status } }, status);
}

// Small DOM helpers: elements built in code (never from HTML strings, so data is never markup),
// formatting, status badges and tables.

export function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "line", "polyline", "circle", "text", "title", "rect", "path"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fmtTime(value) {
  if (!value) return "–";
  const d = new Date(value);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function fmtKWh(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(3) + " kWh";
}

export function fmtKW(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(1) + " kW";
}

export function fmtMoney(amount, currency) {
  return amount === null || amount === undefined ? "–" : amount + " " + (currency || "");
}

const TONE = {
  ONLINE: "ok", AVAILABLE: "ok", COMPLETED: "ok", PAID: "ok", IN_PROGRESS: "ok", CHARGING: "ok",
  OFFLINE: "bad", FAULTED: "bad", FAILED: "bad", REJECTED: "bad", OVERDUE: "bad", UNAVAILABLE: "bad",
  PENDING: "warn", STOPPING: "warn", PREPARING: "warn", FINISHING: "warn", SUSPENDED_EV: "warn",
  SUSPENDED_EVSE: "warn", RESERVED: "warn", OCCUPIED: "warn",
};

export function badge(status, attrs) {
  const text = String(status || "UNKNOWN");
  return h("span", Object.assign({ class: "badge " + (TONE[text] || "off") }, attrs || {}), text.replace(/_/g, " ").toLowerCase());
}

export function onlineBadge(online, attrs) {
  return badge(online ? "ONLINE" : "OFFLINE", attrs);
}

/// A table: columns are [heading, row => cell content]; rowAttrs(row) gives the <tr>'s attributes.
export function table(caption, columns, rows, rowAttrs) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", { scope: "col" }, heading)))),
      h("tbody", {},
        rows.length
          ? rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map(([, cell]) => h("td", {}, cell(row)))))
          : h("tr", {}, h("td", { colspan: columns.length, class: "muted" }, "Nothing to show.")))));
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

/// Tells screen readers what changed without moving focus.
export function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

/// Calls fn now and every `ms` while the page is shown; returns the stop function.
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/// Replaces the children of `el`.
export function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

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
  // reservations, tokens, firmware campaigns, charger logs
  ACCEPTED: "ok", USED: "ok", ACTIVE: "ok", DONE: "ok", UPLOADED: "ok",
  BLOCKED: "bad",
  RUNNING: "warn", SENT: "warn", REQUESTED: "warn", UPLOADING: "warn", PAUSED: "warn",
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

export function fmtAmps(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(1) + " A";
}

/// A labelled form field: the label names the control for screen readers and clicks.
export function field(id, label, control, hint) {
  control.id = id;
  const hintId = hint ? id + "-hint" : null;
  if (hintId) control.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
    hint ? h("p", { class: "hint", id: hintId }, hint) : null);
}

/// A button for what cannot be undone: the first press arms it ("Confirm …"), a second press
/// within five seconds runs `action`; otherwise it disarms.
export function confirmButton(label, confirmLabel, action, attrs) {
  const button = h("button", Object.assign({ type: "button", class: "secondary" }, attrs || {}), label);
  let timer = null;
  const disarm = () => {
    clearTimeout(timer);
    timer = null;
    button.textContent = label;
    button.classList.remove("danger");
  };
  button.addEventListener("click", async () => {
    if (!timer) {
      button.textContent = confirmLabel;
      button.classList.add("danger");
      announce(`Press again to ${confirmLabel.toLowerCase()}.`);
      timer = setTimeout(disarm, 5000);
      return;
    }
    disarm();
    button.disabled = true;
    try {
      await action();
    } finally {
      button.disabled = false;
    }
  });
  button.addEventListener("blur", () => { if (timer) disarm(); });
  button.addEventListener("keydown", (event) => { if (event.key === "Escape" && timer) disarm(); });
  return button;
}

/// A <select> of the first chargers by id (what one request may cost), keeping the choice
/// across refreshes; `first` is the option shown before one is chosen.
export function chargerOptions(select, chargers, chosen, first) {
  const missing = chosen && !chargers.some((c) => c.id === chosen);
  fill(select, first ? h("option", { value: "" }, first) : null,
    chargers.map((c) => h("option", { value: c.id }, c.online ? c.id : `${c.id} (offline)`)),
    missing ? h("option", { value: chosen }, chosen) : null);
  select.value = chosen || "";
}

/// Runs `work` with `button` disabled meanwhile; what it returns is shown in `out` and
/// announced, an error is shown there instead.
export async function runInto(out, button, work) {
  if (button) button.disabled = true;
  fill(out);
  try {
    const text = await work();
    if (text) {
      fill(out, h("p", { class: "done" }, text));
      announce(text);
    }
  } catch (e) {
    fill(out, errorBox(e));
  } finally {
    if (button) button.disabled = false;
  }
}

/// Runs `work` (see runInto) when `form` is submitted.
export function onSubmit(form, out, work) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    runInto(out, form.querySelector("button[type=submit]"), work);
  });
}

/// A number from an <input type=number>, or null when it is empty.
export function numberOf(input) {
  return input.value.trim() === "" ? null : Number(input.value);
}

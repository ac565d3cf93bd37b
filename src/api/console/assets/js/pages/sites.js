// Sites and load: every site with its grid connection, the chargers attached and the load on
// it (allocated and measured per phase), refreshed every two seconds (one site's page is live);
// and a form that creates a site.

import { gql } from "../api.js";
import { h, fill, every, errorBox, table, field, onSubmit, numberOf, fmtAmps, fmtTime } from "../ui.js";

const QUERY = `{ sites {
  id name gridLimitAmps phases voltage marginAmps
  chargers { chargerId online }
  load { allocatedAmps measuredAmps overcommitted updatedAt }
} }`;
const CREATE = `mutation($i: CreateSiteInput!) { createSite(input: $i) { id name } }`;

/// Per-phase values of a site as text: "L1 10.0 · L2 9.5 · L3 10.0 A" (L1 only on one phase).
export function perPhase(values, phases) {
  const shown = (values || []).slice(0, phases === 1 ? 1 : 3);
  if (!shown.length) return "–";
  return shown.map((v, i) => `L${i + 1} ${Number(v).toFixed(1)}`).join(" · ") + " A";
}

function createForm() {
  const name = h("input", { type: "text", required: true, maxlength: 120, autocomplete: "off" });
  const limit = h("input", { type: "number", required: true, min: 1, max: 100000, step: "0.1", inputmode: "decimal" });
  const phases = h("select", {}, h("option", { value: "3" }, "3"), h("option", { value: "1" }, "1"));
  const voltage = h("input", { type: "number", min: 100, max: 1000, step: "1", value: "230" });
  const margin = h("input", { type: "number", min: 0, step: "0.1", value: "0" });
  const out = h("div", { "data-testid": "create-site-answer" });
  const form = h("form", { class: "panel", "aria-labelledby": "create-site-title", id: "create-site" },
    h("h2", { id: "create-site-title" }, "New site"),
    h("div", { class: "form-row" },
      field("site-name", "Name", name),
      field("site-limit", "Grid limit per phase (A)", limit),
      field("site-phases", "Phases", phases),
      field("site-voltage", "Voltage (V)", voltage),
      field("site-margin", "Safety margin (A)", margin, "kept free on every phase")),
    h("div", { class: "row" }, h("button", { type: "submit", id: "create-site-submit" }, "Create site")),
    out);
  onSubmit(form, out, async () => {
    const input = {
      name: name.value.trim(), gridLimitAmps: numberOf(limit), phases: Number(phases.value),
      voltage: numberOf(voltage) ?? 230, marginAmps: numberOf(margin) ?? 0,
    };
    const site = (await gql(CREATE, { i: input })).createSite;
    location.hash = `#/sites/${encodeURIComponent(site.id)}`;
    return `Site ${site.name} created.`;
  });
  return form;
}

export function render(main) {
  const problem = h("div");
  const list = h("div", { class: "stack" });
  fill(main, h("h1", {}, "Sites & load"), problem,
    h("p", { class: "muted" }, "A site is one grid connection whose capacity its chargers share. Loads are in ampere per phase; open a site to follow it live."),
    list, createForm());
  return every(2000, async () => {
    try {
      const data = await gql(QUERY);
      fill(problem);
      fill(list, table("Sites", [
        ["Site", (s) => h("a", { href: `#/sites/${encodeURIComponent(s.id)}` }, s.name)],
        ["Grid limit", (s) => `${fmtAmps(s.gridLimitAmps)} × ${s.phases} phase${s.phases === 1 ? "" : "s"}, ${s.voltage} V`],
        ["Margin", (s) => fmtAmps(s.marginAmps)],
        ["Chargers", (s) => `${s.chargers.length} attached, ${s.chargers.filter((c) => c.online).length} online`],
        ["Allocated", (s) => perPhase(s.load.allocatedAmps, s.phases)],
        ["Measured", (s) => [perPhase(s.load.measuredAmps, s.phases), s.load.overcommitted ? h("span", { class: "badge bad" }, "overcommitted") : null]],
        ["Updated", (s) => fmtTime(s.load.updatedAt)],
      ], data.sites, (s) => ({ "data-site": s.id })));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  });
}

// The operator's actions on one site, as forms: attach a charger (or change its attachment),
// change the site's limits, create a circuit. Each re-allocates the site at once; the page
// sees the result through its live subscription.

import { gql } from "../api.js";
import { h, fill, field, onSubmit, numberOf, chargerOptions } from "../ui.js";

const CHARGERS = `{ chargers(first: 100) { id online } }`;
const ATTACH = `mutation($i: AttachChargerInput!) { attachCharger(input: $i) { id } }`;
const UPDATE = `mutation($i: UpdateSiteInput!) { updateSite(input: $i) { id } }`;
const CIRCUIT = `mutation($i: CreateCircuitInput!) { createCircuit(input: $i) { id name } }`;
const ROTATIONS = ["RST", "STR", "TRS", "RTS", "SRT", "TSR"];

function circuitOptions(select, circuits, none) {
  const chosen = select.value;
  fill(select, h("option", { value: "" }, none), circuits.map((c) => h("option", { value: c.id }, c.name)));
  select.value = circuits.some((c) => c.id === chosen) ? chosen : "";
}

export function siteForms(siteId) {
  let changed = () => {};
  let prefilled = false;
  let circuitsKey = null;

  // attach a charger
  const charger = h("select", { required: true });
  const circuit = h("select", {});
  const maxAmps = h("input", { type: "number", min: 1, max: 1000, step: "0.1", value: "32" });
  const minAmps = h("input", { type: "number", min: 0, max: 1000, step: "0.1", value: "6" });
  const phases = h("select", {}, h("option", { value: "3" }, "3"), h("option", { value: "1" }, "1"));
  const rotation = h("select", {}, ROTATIONS.map((r) => h("option", { value: r }, r)));
  const attachOut = h("div", { "data-testid": "attach-answer" });
  const attach = h("form", { class: "panel", id: "attach-charger", "aria-labelledby": "attach-title" },
    h("h2", { id: "attach-title" }, "Attach a charger"),
    h("div", { class: "form-row" },
      field("attach-charger-id", "Charger", charger),
      field("attach-circuit", "Hangs from", circuit),
      field("attach-max", "Maximum (A)", maxAmps),
      field("attach-min", "Minimum (A)", minAmps, "cars do not charge below 6 A"),
      field("attach-phases", "Phases", phases),
      field("attach-rotation", "Phase rotation", rotation, "the grid phases its L1, L2, L3 are wired to")),
    h("div", { class: "row" }, h("button", { type: "submit", id: "attach-submit" }, "Attach")),
    attachOut);
  onSubmit(attach, attachOut, async () => {
    if (!charger.value) throw new Error("Choose a charger.");
    await gql(ATTACH, { i: {
      siteId, chargerId: charger.value, circuitId: circuit.value || null,
      maxAmps: numberOf(maxAmps), minAmps: numberOf(minAmps), phases: Number(phases.value), phaseRotation: rotation.value,
    } });
    changed();
    return `${charger.value} attached; the site is re-allocated.`;
  });

  // change the limits
  const limit = h("input", { type: "number", min: 1, max: 100000, step: "0.1" });
  const margin = h("input", { type: "number", min: 0, step: "0.1" });
  const other = h("input", { type: "number", min: 0, step: "0.1" });
  const limitsOut = h("div");
  const limits = h("form", { class: "panel", id: "site-limits", "aria-labelledby": "limits-title" },
    h("h2", { id: "limits-title" }, "Change the limits"),
    h("div", { class: "form-row" },
      field("limits-grid", "Grid limit per phase (A)", limit),
      field("limits-margin", "Safety margin (A)", margin),
      field("limits-other", "Other load per phase (A)", other, "what is not a charger, e.g. the building")),
    h("div", { class: "row" }, h("button", { type: "submit", id: "limits-submit" }, "Apply")),
    limitsOut);
  onSubmit(limits, limitsOut, async () => {
    await gql(UPDATE, { i: { siteId, gridLimitAmps: numberOf(limit), marginAmps: numberOf(margin), otherLoadAmps: numberOf(other) } });
    changed();
    return "Limits applied; the site is re-allocated.";
  });

  // a new circuit
  const circuitName = h("input", { type: "text", required: true, maxlength: 120, autocomplete: "off" });
  const circuitLimit = h("input", { type: "number", required: true, min: 1, max: 100000, step: "0.1" });
  const parent = h("select", {});
  const circuitOut = h("div");
  const newCircuit = h("form", { class: "panel", id: "create-circuit", "aria-labelledby": "circuit-title" },
    h("h2", { id: "circuit-title" }, "New circuit"),
    h("div", { class: "form-row" },
      field("circuit-name", "Name", circuitName),
      field("circuit-limit", "Limit per phase (A)", circuitLimit),
      field("circuit-parent", "Below", parent)),
    h("div", { class: "row" }, h("button", { type: "submit", id: "circuit-submit" }, "Create circuit")),
    circuitOut);
  onSubmit(newCircuit, circuitOut, async () => {
    const made = (await gql(CIRCUIT, { i: { siteId, name: circuitName.value.trim(), limitAmps: numberOf(circuitLimit), parentId: parent.value || null } })).createCircuit;
    circuitName.value = "";
    changed();
    return `Circuit ${made.name} created.`;
  });

  (async () => {
    try {
      const data = await gql(CHARGERS);
      chargerOptions(charger, data.chargers, "", "choose a charger");
    } catch (e) {
      fill(attachOut, h("p", { class: "error", role: "alert" }, e.message));
    }
  })();
  circuitOptions(circuit, [], "the grid connection");
  circuitOptions(parent, [], "the grid connection");

  return {
    element: h("div", { class: "grid2" }, attach, limits, newCircuit),
    onChange(fn) { changed = fn; },
    update(site) {
      if (!prefilled) {
        prefilled = true;
        limit.value = site.gridLimitAmps;
        margin.value = site.marginAmps;
        other.value = site.otherLoadAmps;
      }
      const key = JSON.stringify(site.circuits);
      if (key !== circuitsKey) {
        circuitsKey = key;
        circuitOptions(circuit, site.circuits, "the grid connection");
        circuitOptions(parent, site.circuits, "the grid connection");
      }
    },
  };
}

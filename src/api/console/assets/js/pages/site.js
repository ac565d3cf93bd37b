// One site, live (onSiteLoadChanged: the load after every re-allocation): its grid connection,
// per phase what is allocated and what the cars draw, its circuits, the chargers attached and
// each running session's allocation beside what it draws; forms that attach chargers, create
// circuits and change the limits (siteforms.js).

import { gql, subscribe } from "../api.js";
import { h, fill, errorBox, table, badge, onlineBadge, confirmButton, fmtAmps, fmtKW, fmtTime, announce } from "../ui.js";
import { perPhase } from "./sites.js";
import { siteForms } from "./siteforms.js";

const FIELDS = `id name gridLimitAmps phases voltage marginAmps otherLoadAmps
  circuits { id name parentId limitAmps }
  chargers { chargerId maxAmps minAmps circuitId phases phaseRotation externalLimitAmps online fallbackInstalled }
  load { allocatedAmps measuredAmps overcommitted unreachableChargers updatedAt sessions { sessionId chargerId amps } }`;
const DETAILS = `query($id: ID!) { site(id: $id) { ${FIELDS} } }`;
const LIVE = `subscription($id: ID!) { onSiteLoadChanged(siteId: $id) { ${FIELDS} } }`;
const DETACH = `mutation($c: ID!) { detachCharger(chargerId: $c) }`;
/// Sessions whose power is looked up per update (one aliased request within the cost limit).
const SESSIONS_SHOWN = 50;

/// One request for the power of up to SESSIONS_SHOWN sessions, by alias.
function powerQuery(ids) {
  const vars = ids.map((_, i) => `$s${i}: ID!`).join(", ");
  const fields = ids.map((_, i) => `s${i}: session(id: $s${i}) { id powerKW connectorId }`).join(" ");
  return [`query(${vars}) { ${fields} }`, Object.fromEntries(ids.map((id, i) => [`s${i}`, id]))];
}

function chargersTable(s, circuitName, detach) {
  const unreachable = new Set(s.load.unreachableChargers);
  return table("Chargers attached", [
    ["Charger", (c) => h("a", { href: `#/chargers/${encodeURIComponent(c.chargerId)}` }, c.chargerId)],
    ["State", (c) => [onlineBadge(c.online), unreachable.has(c.chargerId) ? badge("UNAVAILABLE", { title: "did not take its last limit" }) : null]],
    ["Min / max", (c) => `${fmtAmps(c.minAmps)} / ${fmtAmps(c.maxAmps)}`],
    ["Phases", (c) => `${c.phases} (${c.phaseRotation})`],
    ["Circuit", (c) => (c.circuitId ? circuitName.get(c.circuitId) || c.circuitId : "grid connection")],
    ["External limit", (c) => fmtAmps(c.externalLimitAmps)],
    ["Fallback profiles", (c) => (c.fallbackInstalled ? "installed" : "not yet")],
    ["Action", (c) => confirmButton(`Detach ${c.chargerId}`, `Confirm: detach ${c.chargerId}`, () => detach(c.chargerId))],
  ], s.chargers, (c) => ({ "data-charger": c.chargerId }));
}

export function render(main, [id]) {
  const problem = h("div");
  const title = h("span", {}, "Site");
  const updated = h("span", { class: "muted", id: "site-updated", "aria-live": "off" });
  const facts = h("dl", { class: "facts" });
  const phasesBox = h("div", { id: "site-phases" });
  const circuits = h("div");
  const chargers = h("div");
  const sessions = h("div", { "data-testid": "site-sessions" });
  const formsBox = h("div");
  let site = null;
  let stopped = false;
  let drawnChargers = null;
  const forms = siteForms(id);

  // what each session draws, from its reported power, looked up once per update
  let powers = new Map();
  let looking = false, lookAgain = false;
  const lookUpPowers = async () => {
    if (looking) { lookAgain = true; return; }
    looking = true;
    try {
      const ids = site.load.sessions.slice(0, SESSIONS_SHOWN).map((s) => s.sessionId);
      if (!ids.length) { powers = new Map(); return; }
      const [query, variables] = powerQuery(ids);
      const data = await gql(query, variables);
      powers = new Map(Object.values(data).filter(Boolean).map((s) => [s.id, s]));
      if (!stopped) drawSessions();
    } catch (e) {
      fill(problem, errorBox(e));
    } finally {
      looking = false;
      if (lookAgain) { lookAgain = false; lookUpPowers(); }
    }
  };

  const drawSessions = () => {
    const phasesOf = new Map(site.chargers.map((c) => [c.chargerId, c.phases]));
    const drawn = (s) => {
      const p = powers.get(s.sessionId);
      if (!p || p.powerKW === null || p.powerKW === undefined) return null;
      return (p.powerKW * 1000) / (site.voltage * (phasesOf.get(s.chargerId) || 3));
    };
    fill(sessions, table("Sessions on this site", [
      ["Session", (s) => h("a", { href: `#/sessions/${encodeURIComponent(s.sessionId)}` }, s.sessionId.slice(0, 8))],
      ["Charger", (s) => h("a", { href: `#/chargers/${encodeURIComponent(s.chargerId)}` }, s.chargerId)],
      ["Allocated per phase", (s) => (s.amps > 0 ? fmtAmps(s.amps) : badge("PAUSED", { title: "0 A: no room for its minimum" }))],
      ["Measured per phase", (s) => fmtAmps(drawn(s))],
      ["Power", (s) => fmtKW((powers.get(s.sessionId) || {}).powerKW)],
    ], site.load.sessions.slice(0, SESSIONS_SHOWN), (s) => ({ "data-session": s.sessionId })));
  };

  const draw = (s) => {
    site = s;
    fill(problem);
    title.textContent = `Site ${s.name}`;
    updated.textContent = `load of ${fmtTime(s.load.updatedAt)}`;
    const circuitName = new Map(s.circuits.map((c) => [c.id, c.name]));
    const fact = (label, value, testid) => [h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value ?? "–")];
    fill(facts,
      fact("Grid limit", `${fmtAmps(s.gridLimitAmps)} per phase`, "site-limit"),
      fact("Phases", s.phases), fact("Voltage", `${s.voltage} V`),
      fact("Safety margin", fmtAmps(s.marginAmps), "site-margin"),
      fact("Other load", fmtAmps(s.otherLoadAmps)),
      fact("Allocated", perPhase(s.load.allocatedAmps, s.phases), "site-allocated"),
      fact("Measured", perPhase(s.load.measuredAmps, s.phases), "site-measured"),
      s.load.overcommitted ? fact("Warning", h("span", { class: "badge bad" }, "offline chargers alone exceed a limit")) : null);
    const phaseCount = s.phases === 1 ? 1 : 3;
    const rows = Array.from({ length: phaseCount }, (_, i) => ({
      phase: `L${i + 1}`, allocated: s.load.allocatedAmps[i] ?? 0, measured: s.load.measuredAmps[i] ?? 0,
    }));
    fill(phasesBox, table("Load per phase", [
      ["Phase", (r) => r.phase],
      ["Limit less margin", () => fmtAmps(s.gridLimitAmps - s.marginAmps)],
      ["Allocated", (r) => fmtAmps(r.allocated)],
      ["Measured", (r) => fmtAmps(r.measured)],
      ["Use of the limit", (r) => h("meter", {
        min: 0, max: s.gridLimitAmps, value: Math.min(r.measured, s.gridLimitAmps), high: s.gridLimitAmps - s.marginAmps,
        optimum: 0, "aria-label": `${r.phase}: ${r.measured.toFixed(1)} of ${s.gridLimitAmps} A measured`,
      }, `${r.measured.toFixed(1)} A`)],
    ], rows, (r) => ({ "data-phase": r.phase })));
    fill(circuits, s.circuits.length
      ? table("Circuits", [
        ["Circuit", (c) => c.name],
        ["Below", (c) => (c.parentId ? circuitName.get(c.parentId) || c.parentId : "the grid connection")],
        ["Limit", (c) => fmtAmps(c.limitAmps)],
      ], s.circuits)
      : h("p", { class: "muted" }, "No circuits: every charger hangs from the grid connection."));
    // redrawn only when it changed, so that a live update never takes a half-pressed button
    const chargersKey = JSON.stringify([s.chargers, s.load.unreachableChargers, s.circuits]);
    if (chargersKey !== drawnChargers) {
      drawnChargers = chargersKey;
      fill(chargers, chargersTable(s, circuitName, async (chargerId) => {
        try {
          await gql(DETACH, { c: chargerId });
          announce(`${chargerId} detached.`);
          load();
        } catch (e) {
          fill(problem, errorBox(e));
        }
      }));
    }
    drawSessions();
    lookUpPowers();
    forms.update(s);
  };

  const load = async () => {
    try {
      const data = await gql(DETAILS, { id });
      if (stopped) return;
      if (!data.site) {
        fill(problem, h("p", { class: "error", role: "alert" }, "There is no such site."));
        return;
      }
      draw(data.site);
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };
  forms.onChange(load);

  fill(main,
    h("p", {}, h("a", { href: "#/sites" }, "← Sites & load")),
    h("h1", {}, title, " ", updated), problem,
    h("div", { class: "grid2" },
      h("section", { class: "panel", "aria-labelledby": "site-facts" }, h("h2", { id: "site-facts" }, "Grid connection"), facts),
      h("section", { "aria-labelledby": "site-phases-title" }, h("h2", { id: "site-phases-title" }, "Load per phase"), phasesBox)),
    h("h2", {}, "Sessions"),
    h("p", { class: "muted" }, "Allocated: what the site gives each session (0 A is paused). Measured: the power the charger reports, in ampere per phase at the site's voltage."),
    sessions,
    h("h2", {}, "Chargers"), chargers,
    h("h2", {}, "Circuits"), circuits,
    formsBox);
  fill(formsBox, forms.element);
  load();
  const unsubscribe = subscribe(LIVE, { id }, (data) => { if (!stopped) draw(data.onSiteLoadChanged); }, (e) => fill(problem, errorBox(e)));
  return () => {
    stopped = true;
    unsubscribe();
  };
}

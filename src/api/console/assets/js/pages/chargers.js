// Chargers: search and filter by status, station and protocol; online state and connector
// statuses refresh every two seconds.

import { gql } from "../api.js";
import { h, fill, every, errorBox, table, badge, onlineBadge, fmtTime } from "../ui.js";

// The first PAGE chargers by id: the API's cost limit keeps one request at about a hundred
// chargers with their connectors.
const PAGE = 100;
const QUERY = `{ chargers(first: ${PAGE}) { id stationId online protocol vendor model lastSeen connectors { connectorId status } } }`;
const STATIONS = `{ stationPoints(first: 1000) { id name chargers } }`;

function select(id, label, options) {
  const el = h("select", { id }, options.map(([value, text]) => h("option", { value }, text)));
  return [h("div", {}, h("label", { for: id }, label), el), el];
}

export function render(main, [stationId]) {
  const search = h("input", { id: "charger-search", type: "search", placeholder: "id, vendor or model" });
  const [statusField, status] = select("charger-status", "Status", [["", "any"], ["online", "online"], ["offline", "offline"], ["faulted", "faulted"], ["charging", "charging"]]);
  const [protocolField, protocol] = select("charger-protocol", "Protocol", [["", "any"], ["OCPP16", "OCPP 1.6"], ["OCPP201", "OCPP 2.0.1"]]);
  const [stationField, station] = select("charger-station", "Station", [["", "any"]]);
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const list = h("div");
  const problem = h("div");
  let latest = null;
  const stations = new Map();

  const draw = () => {
    if (!latest) return;
    const q = search.value.trim().toLowerCase();
    const rows = latest.filter((c) =>
      (!q || [c.id, c.vendor, c.model].some((v) => v && v.toLowerCase().includes(q))) &&
      (!protocol.value || c.protocol === protocol.value) &&
      (!station.value || c.stationId === station.value) &&
      (!status.value ||
        (status.value === "online" && c.online) ||
        (status.value === "offline" && !c.online) ||
        (status.value === "faulted" && c.connectors.some((k) => k.status === "FAULTED")) ||
        (status.value === "charging" && c.connectors.some((k) => k.status === "CHARGING"))));
    count.textContent = `${rows.length} of ${latest.length} chargers` + (latest.length === PAGE ? ` (the first ${PAGE} by id)` : "");
    fill(list, table("Chargers", [
      ["Charger", (c) => h("a", { href: `#/chargers/${encodeURIComponent(c.id)}` }, c.id)],
      ["State", (c) => onlineBadge(c.online, { "data-testid": "charger-online" })],
      ["Connectors", (c) => c.connectors.filter((k) => k.connectorId > 0).map((k) => badge(k.status, { title: `connector ${k.connectorId}` }))],
      ["Station", (c) => (stations.get(c.stationId) || "–")],
      ["Protocol", (c) => c.protocol || "–"],
      ["Vendor / model", (c) => [c.vendor, c.model].filter(Boolean).join(" ") || "–"],
      ["Last seen", (c) => fmtTime(c.lastSeen)],
    ], rows, (c) => ({ "data-charger": c.id })));
  };
  for (const el of [search, status, protocol, station]) el.addEventListener("input", draw);

  fill(main,
    h("h1", {}, "Chargers"), problem,
    h("div", { class: "filters", role: "search" },
      h("div", {}, h("label", { for: "charger-search" }, "Search"), search),
      statusField, stationField, protocolField),
    count, list);

  return every(2000, async () => {
    try {
      const [data, points] = await Promise.all([gql(QUERY), gql(STATIONS)]);
      data.stationPoints = points.stationPoints;
      fill(problem);
      const withChargers = data.stationPoints.filter((s) => s.chargers > 0);
      if (withChargers.length !== stations.size) {
        stations.clear();
        const chosen = station.value;
        fill(station, h("option", { value: "" }, "any"),
          withChargers.map((s) => { stations.set(s.id, s.name); return h("option", { value: s.id }, s.name); }));
        station.value = chosen || stationId || "";
      }
      latest = data.chargers;
      draw();
    } catch (e) {
      fill(problem, errorBox(e));
    }
  });
}

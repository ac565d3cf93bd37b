// Stations on a map drawn from their coordinates: an equirectangular projection fitted to the
// stations, one point per station coloured by its chargers' state. No tile server and no
// country outlines (no small enough dataset is bundled); the table below lists the same
// stations for keyboard and screen-reader users.

import { gql } from "../api.js";
import { h, fill, errorBox, table } from "../ui.js";

const QUERY = `{ stationPoints(first: 5000) { id name town country latitude longitude chargers chargersOnline } }`;
const W = 900, H = 520, PAD = 24;

function tone(s) {
  if (!s.chargers) return "none";
  return s.chargersOnline > 0 ? "online" : "offline";
}

function draw(points) {
  const svg = h("svg", { class: "map", viewBox: `0 0 ${W} ${H}`, role: "img", "data-testid": "station-map",
    "aria-label": `Map of ${points.length} stations` });
  if (!points.length) {
    svg.append(h("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No stations yet: run chargegrid seed-demo"));
    return svg;
  }
  const lats = points.map((p) => p.latitude), lons = points.map((p) => p.longitude);
  let [latMin, latMax, lonMin, lonMax] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  if (latMax - latMin < 0.5) { latMin -= 0.25; latMax += 0.25; }
  if (lonMax - lonMin < 0.5) { lonMin -= 0.25; lonMax += 0.25; }
  // longitude degrees shrink with latitude: keep the aspect true at the middle latitude
  const k = Math.cos(((latMin + latMax) / 2) * Math.PI / 180);
  const scale = Math.min((W - 2 * PAD) / ((lonMax - lonMin) * k), (H - 2 * PAD) / (latMax - latMin));
  const x = (lon) => PAD + (lon - lonMin) * k * scale;
  const y = (lat) => H - PAD - (lat - latMin) * scale;
  for (let lon = Math.ceil(lonMin / 5) * 5; lon <= lonMax; lon += 5) {
    svg.append(h("line", { class: "grid", x1: x(lon), x2: x(lon), y1: PAD, y2: H - PAD }), h("text", { x: x(lon) + 2, y: H - 8 }, `${lon}°`));
  }
  for (let lat = Math.ceil(latMin / 5) * 5; lat <= latMax; lat += 5) {
    svg.append(h("line", { class: "grid", x1: PAD, x2: W - PAD, y1: y(lat), y2: y(lat) }), h("text", { x: 2, y: y(lat) - 2 }, `${lat}°`));
  }
  // stations with chargers drawn last, on top
  for (const s of [...points].sort((a, b) => a.chargers - b.chargers)) {
    const r = s.chargers ? 6 : 3;
    const dot = h("circle", { class: `station ${tone(s)}`, cx: x(s.longitude).toFixed(1), cy: y(s.latitude).toFixed(1), r },
      h("title", {}, `${s.name}${s.town ? ", " + s.town : ""}: ${s.chargers ? `${s.chargersOnline} of ${s.chargers} chargers online` : "no chargers"}`));
    svg.append(s.chargers ? h("a", { href: `#/chargers?station=${s.id}` }, dot) : dot);
  }
  return svg;
}

export function render(main) {
  const problem = h("div");
  const mapBox = h("div");
  const list = h("div");
  fill(main, h("h1", {}, "Stations map"), problem,
    h("div", { class: "legend" },
      h("span", {}, h("span", { class: "swatch online" }), "chargers online"),
      h("span", {}, h("span", { class: "swatch offline" }), "chargers, all offline"),
      h("span", {}, h("span", { class: "swatch none" }), "no chargers")),
    mapBox, h("h2", {}, "Stations with chargers"), list);
  (async () => {
    try {
      const data = await gql(QUERY);
      fill(mapBox, draw(data.stationPoints));
      fill(list, table("Stations with chargers", [
        ["Station", (s) => s.name],
        ["Town", (s) => [s.town, s.country].filter(Boolean).join(", ") || "–"],
        ["Chargers online", (s) => `${s.chargersOnline} of ${s.chargers}`],
        ["Position", (s) => `${s.latitude.toFixed(4)}, ${s.longitude.toFixed(4)}`],
      ], data.stationPoints.filter((s) => s.chargers > 0)));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  })();
  return () => {};
}

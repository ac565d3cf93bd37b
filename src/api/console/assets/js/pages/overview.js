// Overview: the fleet at a glance, refreshed every two seconds (the API has no fleet-wide
// subscription), with the chargers that need attention and the sessions running.

import { gql } from "../api.js";
import { h, fill, every, errorBox, table, onlineBadge, fmtKWh, fmtKW, fmtTime } from "../ui.js";

const QUERY = `{
  overview { chargersOnline chargersOffline chargersFaulted sessionsRunning energyTodayKWh }
  sessions(status: IN_PROGRESS, first: 10) { id chargerId connectorId energyKWh powerKW startTime }
  chargers(online: false, first: 20) { id online lastSeen }
}`;

function card(id, label, value) {
  return h("div", { class: "card" }, h("div", { class: "value", id, "data-testid": id }, value), h("div", { class: "label" }, label));
}

export function render(main) {
  const cards = h("div", { class: "cards", "aria-live": "polite" });
  const attention = h("div");
  const running = h("div");
  const problem = h("div");
  fill(main,
    h("h1", {}, "Overview"), problem, cards,
    h("h2", {}, "Sessions running"), running,
    h("h2", {}, "Offline chargers"), attention,
    h("p", {}, h("a", { href: "#/chargers" }, "All chargers"), " (filter by status to see the faulted ones)"));
  return every(2000, async () => {
    try {
      const data = await gql(QUERY);
      const o = data.overview;
      fill(problem);
      fill(cards,
        card("overview-online", "chargers online", o.chargersOnline),
        card("overview-offline", "chargers offline", o.chargersOffline),
        card("overview-faulted", "chargers faulted", o.chargersFaulted),
        card("overview-sessions", "sessions running", o.sessionsRunning),
        card("overview-energy", "energy delivered today", fmtKWh(o.energyTodayKWh)));
      fill(running, table("Sessions running", [
        ["Session", (s) => h("a", { href: `#/sessions/${s.id}` }, s.id.slice(0, 8))],
        ["Charger", (s) => h("a", { href: `#/chargers/${encodeURIComponent(s.chargerId)}` }, s.chargerId)],
        ["Connector", (s) => s.connectorId ?? "–"],
        ["Energy", (s) => fmtKWh(s.energyKWh)],
        ["Power", (s) => fmtKW(s.powerKW)],
        ["Started", (s) => fmtTime(s.startTime)],
      ], data.sessions));
      fill(attention, table("Offline chargers", [
        ["Charger", (c) => h("a", { href: `#/chargers/${encodeURIComponent(c.id)}` }, c.id)],
        ["State", (c) => onlineBadge(c.online)],
        ["Last seen", (c) => fmtTime(c.lastSeen)],
      ], data.chargers));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  });
}

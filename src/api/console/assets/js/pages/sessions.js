// Sessions of every driver, newest first, refreshed every two seconds.

import { gql } from "../api.js";
import { h, fill, every, errorBox, table, badge, fmtKWh, fmtKW, fmtTime, fmtMoney } from "../ui.js";

const QUERY = `query($status: SessionStatus) { sessions(status: $status, first: 100) {
  id userId chargerId connectorId status energyKWh powerKW startTime endTime cost currency
} }`;

export function render(main) {
  const status = h("select", { id: "session-status" },
    [["", "any"], ["IN_PROGRESS", "in progress"], ["PENDING", "pending"], ["STOPPING", "stopping"], ["COMPLETED", "completed"], ["FAILED", "failed"], ["REJECTED", "rejected"]]
      .map(([value, text]) => h("option", { value }, text)));
  const list = h("div");
  const problem = h("div");
  let refresh = () => {};
  status.addEventListener("change", () => refresh());
  fill(main, h("h1", {}, "Sessions"), problem,
    h("div", { class: "filters" }, h("div", {}, h("label", { for: "session-status" }, "Status"), status)),
    list);
  const load = async () => {
    try {
      const data = await gql(QUERY, { status: status.value || null });
      fill(problem);
      fill(list, table("Sessions", [
        ["Session", (s) => h("a", { href: `#/sessions/${s.id}` }, s.id.slice(0, 8))],
        ["Status", (s) => badge(s.status)],
        ["Charger", (s) => h("a", { href: `#/chargers/${encodeURIComponent(s.chargerId)}` }, s.chargerId)],
        ["Connector", (s) => s.connectorId ?? "–"],
        ["Energy", (s) => fmtKWh(s.energyKWh)],
        ["Power", (s) => fmtKW(s.powerKW)],
        ["Cost", (s) => fmtMoney(s.cost, s.currency)],
        ["Started", (s) => fmtTime(s.startTime)],
        ["Ended", (s) => fmtTime(s.endTime)],
      ], data.sessions, (s) => ({ "data-session": s.id })));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };
  refresh = load;
  return every(2000, load);
}

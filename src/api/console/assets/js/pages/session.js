// One session, live: onSessionStatusChanged updates the figures, and each update redraws the
// meter curve from the stored samples. Its invoice appears once billing has written it.

import { gql, subscribe } from "../api.js";
import { h, fill, errorBox, badge, fmtKWh, fmtKW, fmtTime, fmtMoney } from "../ui.js";
import { meterChart } from "../chart.js";

const DETAILS = `query($id: ID!) { session(id: $id) {
  id userId stationId chargerId connectorId status energyKWh powerKW startTime endTime cost currency stopReason
  meterValues(last: 500) { sampledAt energyKWh powerKW }
  invoice { id amount currency status dueDate paidAt }
} }`;
const LIVE = `subscription($id: ID!) { onSessionStatusChanged(sessionId: $id) { id status energyKWh powerKW } }`;

export function render(main, [id]) {
  const problem = h("div");
  const facts = h("dl", { class: "facts" });
  const chart = h("div", { id: "meter-chart-box" });
  const invoice = h("div", { id: "invoice" });
  const status = h("span", { id: "session-state", "aria-live": "polite" });
  fill(main,
    h("p", {}, h("a", { href: "#/sessions" }, "← Sessions")),
    h("h1", {}, `Session ${id.slice(0, 8)} `, status), problem,
    h("div", { class: "grid2" },
      h("section", { class: "panel", "aria-labelledby": "session-facts" }, h("h2", { id: "session-facts" }, "Session"), facts),
      h("section", { class: "panel", "aria-labelledby": "session-invoice" }, h("h2", { id: "session-invoice" }, "Invoice"), invoice)),
    h("section", { "aria-labelledby": "curve-title" },
      h("h2", { id: "curve-title" }, "Meter curve"),
      h("div", { class: "legend" },
        h("span", {}, h("span", { class: "swatch energy" }), "energy delivered (kWh)"),
        h("span", {}, h("span", { class: "swatch power" }), "power (kW)")),
      chart));

  let loading = null, again = false, stopped = false;
  const load = async () => {
    if (stopped) return;
    if (loading) { again = true; return; }
    loading = (async () => {
      try {
        const data = await gql(DETAILS, { id });
        const s = data.session;
        if (!s) {
          fill(problem, h("p", { class: "error", role: "alert" }, "There is no such session."));
          return;
        }
        fill(problem);
        fill(status, badge(s.status, { "data-testid": "session-status" }));
        const fact = (label, value, testid) => [h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value ?? "–")];
        fill(facts,
          fact("Status", s.status),
          fact("Charger", h("a", { href: `#/chargers/${encodeURIComponent(s.chargerId)}` }, s.chargerId)),
          fact("Connector", s.connectorId), fact("Driver", s.userId),
          fact("Energy", fmtKWh(s.energyKWh), "session-energy"), fact("Power", fmtKW(s.powerKW)),
          fact("Started", fmtTime(s.startTime)), fact("Ended", fmtTime(s.endTime)),
          fact("Cost", fmtMoney(s.cost, s.currency)), fact("Stop reason", s.stopReason));
        fill(chart, meterChart(s.meterValues));
        const i = s.invoice;
        fill(invoice, i
          ? h("dl", { class: "facts", "data-testid": "invoice" },
            h("dt", {}, "Amount"), h("dd", {}, fmtMoney(i.amount, i.currency)),
            h("dt", {}, "Status"), h("dd", {}, badge(i.status)),
            h("dt", {}, "Due"), h("dd", {}, fmtTime(i.dueDate)),
            h("dt", {}, "Paid"), h("dd", {}, fmtTime(i.paidAt)),
            h("dt", {}, "Invoice id"), h("dd", {}, i.id))
          : h("p", { class: "muted" }, ["COMPLETED"].includes(s.status) ? "Billing is writing the invoice…" : "Invoiced when the session ends."));
        if (s.status === "COMPLETED" && !i) setTimeout(load, 1500);
      } catch (e) {
        fill(problem, errorBox(e));
      } finally {
        loading = null;
        if (again) { again = false; load(); }
      }
    })();
  };
  load();
  const unsubscribe = subscribe(LIVE, { id }, () => load(), (e) => fill(problem, errorBox(e)));
  return () => {
    stopped = true;
    unsubscribe();
  };
}

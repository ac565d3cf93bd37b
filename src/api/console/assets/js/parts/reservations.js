// A charger's live reservations (chargerReservations: accepted and not yet expired), each with
// a cancel that tells the charger (CancelReservation). Shown on the Reservations page and on a
// charger's page.

import { gql } from "../api.js";
import { h, fill, errorBox, table, badge, confirmButton, fmtTime, announce } from "../ui.js";

const QUERY = `query($c: ID!) { chargerReservations(chargerId: $c) { id userId connectorId connectorType status expiresAt createdAt } }`;
const CANCEL = `mutation($id: ID!) { cancelReservation(reservationId: $id) { id status reason } }`;

/// { element, load }: load() reads the reservations again.
export function reservationsOf(chargerId) {
  const problem = h("div");
  const list = h("div");
  const answer = h("p", { "data-testid": "reservation-answer", role: "status" });
  let drawn = null;
  const load = async () => {
    try {
      const data = await gql(QUERY, { c: chargerId });
      fill(problem);
      const key = JSON.stringify(data.chargerReservations);
      if (key === drawn) return; // an unchanged list keeps a half-pressed button
      drawn = key;
      fill(list, table(`Reservations of ${chargerId}`, [
        ["Reservation", (r) => r.id.slice(0, 8)],
        ["Connector", (r) => r.connectorId ?? (r.connectorType ? `any ${r.connectorType}` : "any")],
        ["Driver", (r) => h("span", { title: r.userId }, r.userId.slice(0, 8))],
        ["Status", (r) => badge(r.status)],
        ["Made", (r) => fmtTime(r.createdAt)],
        ["Expires", (r) => fmtTime(r.expiresAt)],
        ["Action", (r) => confirmButton(`Cancel ${r.id.slice(0, 8)}`, `Confirm: cancel ${r.id.slice(0, 8)}`, async () => {
          try {
            const done = (await gql(CANCEL, { id: r.id })).cancelReservation;
            answer.textContent = `Reservation ${done.id.slice(0, 8)} is ${done.status.toLowerCase()}` + (done.reason ? ` (${done.reason}).` : ".");
          } catch (e) {
            answer.textContent = `Cancel ${r.id.slice(0, 8)}: ${e.code}: ${e.message}`;
          }
          announce(answer.textContent);
          await load();
        })],
      ], data.chargerReservations, (r) => ({ "data-reservation": r.id })));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };
  return {
    element: h("div", {}, problem, answer, list,
      h("p", { class: "muted" }, "Only live reservations are listed: accepted by the charger and not yet expired, used or cancelled.")),
    load,
  };
}

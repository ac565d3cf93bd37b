// Reservations: the live reservations of a charger chosen from the fleet (the API lists them
// per charger), refreshed every two seconds, each with a cancel.

import { gql } from "../api.js";
import { h, fill, every, errorBox, chargerOptions } from "../ui.js";
import { reservationsOf } from "../parts/reservations.js";

const CHARGERS = `{ chargers(first: 100) { id online } }`;

export function render(main, [chosen]) {
  const problem = h("div");
  const picker = h("select", { id: "reservation-charger" });
  const box = h("div");
  let current = null;
  const show = () => {
    const id = picker.value;
    if (id === (current && current.id)) return;
    current = id ? Object.assign(reservationsOf(id), { id }) : null;
    fill(box, current ? current.element : h("p", { class: "muted" }, "Choose a charger to see its reservations."));
    if (current) current.load();
    history.replaceState(null, "", id ? `#/reservations?charger=${encodeURIComponent(id)}` : "#/reservations");
  };
  picker.addEventListener("change", show);
  fill(main, h("h1", {}, "Reservations"), problem,
    h("div", { class: "filters" }, h("div", {}, h("label", { for: "reservation-charger" }, "Charger"), picker),
      h("p", { class: "muted" }, "The first 100 chargers by id.")),
    box);
  let first = true;
  return every(2000, async () => {
    try {
      if (first) {
        const data = await gql(CHARGERS);
        chargerOptions(picker, data.chargers, chosen, "choose a charger");
        first = false;
        show();
      } else if (current) {
        await current.load();
      }
      fill(problem);
    } catch (e) {
      fill(problem, errorBox(e));
    }
  });
}

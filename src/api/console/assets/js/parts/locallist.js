// What one charger holds of its local authorization list (the version it accepted last, its
// entries, what it reported after its boot), which list it is given, and the pushes: the
// difference since its version, or the whole list. Refreshed every two seconds.

import { gql } from "../api.js";
import { h, fill, every, errorBox, field, runInto, fmtTime } from "../ui.js";

const QUERY = `query($c: ID!) {
  chargerLocalList(chargerId: $c) { listId version entries syncedAt reportedVersion reportedAt }
  localLists { id name }
}`;
const ASSIGN = `mutation($c: ID!, $l: ID) { assignLocalList(chargerId: $c, listId: $l) }`;
const PUSH = `mutation($c: ID!, $f: Boolean) { pushLocalList(chargerId: $c, full: $f) }`;

/// { element, load, stop } for charger `chargerId`.
export function chargerLocalList(chargerId) {
  const problem = h("div");
  const facts = h("dl", { class: "facts", "data-testid": "local-list-state" });
  const choice = h("select", {});
  const out = h("div", { "data-testid": "local-list-answer" });
  const assign = h("button", { type: "button", id: "list-assign" }, "Give this list");
  const pushDiff = h("button", { type: "button", class: "secondary", id: "list-push" }, "Push the changes");
  const pushFull = h("button", { type: "button", class: "secondary", id: "list-push-full" }, "Push the whole list");
  let names = new Map();
  let drawnLists = null;

  const load = async () => {
    try {
      const data = await gql(QUERY, { c: chargerId });
      fill(problem);
      names = new Map(data.localLists.map((l) => [l.id, l.name]));
      const key = JSON.stringify(data.localLists);
      if (key !== drawnLists) {
        drawnLists = key;
        const chosen = choice.value;
        fill(choice, h("option", { value: "" }, "no list"), data.localLists.map((l) => h("option", { value: l.id }, l.name)));
        choice.value = names.has(chosen) ? chosen : data.chargerLocalList.listId || "";
      }
      const held = data.chargerLocalList;
      const fact = (label, value, testid) => [h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value ?? "–")];
      fill(facts,
        fact("Given", held.listId ? names.get(held.listId) || held.listId : "no list", "local-list-given"),
        fact("Version it accepted", held.version === 0 ? "0 (never had one)" : String(held.version), "local-list-version"),
        fact("Entries it holds", String(held.entries), "local-list-entries"),
        fact("Last sent", fmtTime(held.syncedAt)),
        fact("Version it reported", held.reportedVersion ?? "–"),
        fact("Reported", fmtTime(held.reportedAt)));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };

  assign.addEventListener("click", () => runInto(out, assign, async () => {
    const list = choice.value || null;
    await gql(ASSIGN, { c: chargerId, l: list });
    await load();
    return list
      ? `${chargerId} is given ${names.get(list)}; an online charger gets it at once.`
      : `${chargerId} is given no list; its next push empties the charger's.`;
  }));
  const push = (button, full) => runInto(out, button, async () => {
    const version = (await gql(PUSH, { c: chargerId, f: full })).pushLocalList;
    await load();
    return `${chargerId} holds version ${version} of its list.`;
  });
  pushDiff.addEventListener("click", () => push(pushDiff, false));
  pushFull.addEventListener("click", () => push(pushFull, true));

  const stop = every(2000, load);
  return {
    element: h("section", { class: "panel", "aria-label": `Local list of ${chargerId}` },
      problem, facts,
      h("div", { class: "row" }, field("list-choice", "List", choice), assign),
      h("div", { class: "row" }, pushDiff, pushFull),
      out),
    load,
    stop,
  };
}

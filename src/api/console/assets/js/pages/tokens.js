// RFID cards and other tokens: search them (by prefix, group or owner), block one (chargers that
// may hold it in their cache are told to clear it), set or clear its fleet group; local
// authorization lists and what a charger holds of its list (parts/locallists.js,
// parts/locallist.js).

import { gql } from "../api.js";
import { h, fill, errorBox, table, badge, field, confirmButton, fmtTime, announce, chargerOptions } from "../ui.js";
import { localLists } from "../parts/locallists.js";
import { chargerLocalList } from "../parts/locallist.js";

const SEARCH = `query($p: String, $g: String, $u: ID) { idTokens(prefix: $p, groupIdToken: $g, userId: $u, first: 100) {
  idToken type userId groupIdToken chargerGroupIdToken blocked expiresAt createdAt
} }`;
const BLOCK = `mutation($t: String!) { blockIdToken(idToken: $t) { idToken blocked } }`;
const GROUP = `mutation($t: String!, $g: String) { setIdTokenGroup(idToken: $t, groupIdToken: $g) { idToken groupIdToken } }`;
const CHARGERS = `{ chargers(first: 100) { id online } }`;

function state(t) {
  if (t.blocked) return badge("BLOCKED");
  if (t.expiresAt && new Date(t.expiresAt) < new Date()) return badge("EXPIRED");
  return badge("ACTIVE");
}

export function render(main) {
  const problem = h("div");
  const answer = h("p", { id: "token-answer", "data-testid": "token-answer", role: "status" });
  const results = h("div", { class: "stack" });
  const prefix = h("input", { type: "search", placeholder: "e.g. 04A1", autocomplete: "off" });
  const group = h("input", { type: "search", autocomplete: "off" });
  const owner = h("input", { type: "search", placeholder: "user id", autocomplete: "off" });
  const search = h("form", { class: "filters", role: "search", id: "token-search" },
    field("token-prefix", "Token starts with", prefix), field("token-group", "Group", group),
    field("token-owner", "Owner", owner),
    h("div", {}, h("button", { type: "submit", id: "token-search-submit" }, "Search")));
  let stopped = false;

  const tell = (text) => {
    answer.textContent = text;
    announce(text);
  };

  const groupForm = (t) => {
    const input = h("input", { type: "text", value: t.groupIdToken || "", "aria-label": `Group of ${t.idToken}`, size: 12, autocomplete: "off" });
    const form = h("form", { class: "inline", "data-group-of": t.idToken }, input, h("button", { type: "submit", class: "secondary" }, "Set group"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const g = input.value.trim() || null;
      try {
        const done = (await gql(GROUP, { t: t.idToken, g })).setIdTokenGroup;
        tell(done.groupIdToken ? `${done.idToken} is in group ${done.groupIdToken} now.` : `${done.idToken} has no group of its own now.`);
        load();
      } catch (e) {
        tell(`Group of ${t.idToken}: ${e.code}: ${e.message}`);
      }
    });
    return form;
  };

  // answers may arrive out of order: only the newest search is shown
  let generation = 0;
  const load = async () => {
    const mine = ++generation;
    try {
      const data = await gql(SEARCH, { p: prefix.value.trim() || null, g: group.value.trim() || null, u: owner.value.trim() || null });
      if (stopped || mine !== generation) return;
      fill(problem);
      // a group being typed survives the refresh (a search answered late, a block or a group set
      // on another row reloads the table): the operator's input is not thrown away under them
      const typed = new Map();
      for (const input of results.querySelectorAll("[data-group-of] input")) {
        if (input.value !== input.defaultValue) typed.set(input.closest("[data-group-of]").dataset.groupOf, input.value);
      }
      fill(results, table("Tokens", [
        ["Token", (t) => t.idToken],
        ["Type", (t) => t.type],
        ["State", (t) => state(t)],
        ["Owner", (t) => (t.userId ? h("span", { title: t.userId }, t.userId.slice(0, 8)) : "–")],
        ["Group", (t) => groupForm(t)],
        ["Chargers are told", (t) => t.chargerGroupIdToken || "–"],
        ["Expires", (t) => fmtTime(t.expiresAt)],
        ["Registered", (t) => fmtTime(t.createdAt)],
        ["Action", (t) => (t.blocked ? "blocked" : confirmButton(`Block ${t.idToken}`, `Confirm: block ${t.idToken}`, async () => {
          try {
            const done = (await gql(BLOCK, { t: t.idToken })).blockIdToken;
            tell(`${done.idToken} is blocked: chargers refuse it from now on.`);
          } catch (e) {
            tell(`Block ${t.idToken}: ${e.code}: ${e.message}`);
          }
          load();
        }, { "data-block": t.idToken }))],
      ], data.idTokens, (t) => ({ "data-token": t.idToken })));
      for (const form of results.querySelectorAll("[data-group-of]")) {
        const value = typed.get(form.dataset.groupOf);
        if (value !== undefined) form.querySelector("input").value = value;
      }
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });

  // what one charger holds of its local list, for a charger chosen here
  const picker = h("select", { id: "list-charger" });
  const held = h("div");
  let heldPart = null;
  picker.addEventListener("change", () => {
    if (heldPart) heldPart.stop();
    heldPart = picker.value ? chargerLocalList(picker.value) : null;
    fill(held, heldPart ? heldPart.element : null);
  });
  const lists = localLists(() => heldPart && heldPart.load());

  fill(main, h("h1", {}, "RFID cards"), problem,
    h("p", { class: "muted" }, "Drivers' RFID cards and other tokens (the first 100 that match, by token). A blocked token cannot be unblocked here: the driver registers a new card."),
    search, answer, results,
    h("h2", {}, "Local authorization lists"),
    h("p", { class: "muted" }, "Named lists of tokens a charger keeps to authorize drivers while it is offline. One list per charger; changes reach the online chargers that hold it."),
    lists.element,
    h("h2", { id: "list-charger-title" }, "A charger's local list"),
    h("div", { class: "filters" }, field("list-charger", "Charger", picker)),
    held);
  load();
  lists.load();
  gql(CHARGERS).then((data) => chargerOptions(picker, data.chargers, "", "choose a charger"), (e) => fill(problem, errorBox(e)));
  return () => {
    stopped = true;
    if (heldPart) heldPart.stop();
  };
}

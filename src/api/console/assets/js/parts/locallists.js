// Local authorization lists: every list with its tokens, a form that creates one and a form
// that adds tokens to a list or removes them (the online chargers given the list are updated).

import { gql } from "../api.js";
import { h, fill, errorBox, table, field, onSubmit, runInto, fmtTime } from "../ui.js";

const LISTS = `{ localLists { id name size createdAt idTokens(first: 100) } }`;
const CREATE = `mutation($n: String!) { createLocalList(name: $n) { id name } }`;
const ADD = `mutation($l: ID!, $t: [String!]!) { addToLocalList(listId: $l, idTokens: $t) { name size } }`;
const REMOVE = `mutation($l: ID!, $t: [String!]!) { removeFromLocalList(listId: $l, idTokens: $t) { name size } }`;

/// Tokens typed into a field, separated by commas, spaces or new lines.
function tokensOf(text) {
  return text.split(/[\s,;]+/).map((t) => t.trim()).filter(Boolean);
}

/// { element, load }; `changed` is called after a list changed.
export function localLists(changed) {
  const problem = h("div");
  const list = h("div", { id: "local-lists", class: "stack" });
  const name = h("input", { type: "text", required: true, maxlength: 120, autocomplete: "off" });
  const createOut = h("div");
  const create = h("form", { class: "panel", id: "create-list", "aria-labelledby": "create-list-title" },
    h("h3", { id: "create-list-title" }, "New list"),
    field("list-name", "Name", name),
    h("div", { class: "row" }, h("button", { type: "submit", id: "create-list-submit" }, "Create list")),
    createOut);
  const target = h("select", { required: true });
  const tokens = h("textarea", { rows: 3, spellcheck: "false" });
  const editOut = h("div", { "data-testid": "list-answer" });
  const addButton = h("button", { type: "submit", id: "list-add" }, "Add to the list");
  const removeButton = h("button", { type: "button", class: "secondary", id: "list-remove" }, "Remove from the list");
  const edit = h("form", { class: "panel", id: "edit-list", "aria-labelledby": "edit-list-title" },
    h("h3", { id: "edit-list-title" }, "Add or remove tokens"),
    field("edit-list-id", "List", target),
    field("edit-list-tokens", "Tokens", tokens, "registered tokens, separated by commas or new lines"),
    h("div", { class: "row" }, addButton, removeButton),
    editOut);

  let lists = [];
  const load = async () => {
    try {
      const data = await gql(LISTS);
      lists = data.localLists;
      fill(problem);
      const chosen = target.value;
      fill(target, lists.map((l) => h("option", { value: l.id }, l.name)));
      if (lists.some((l) => l.id === chosen)) target.value = chosen;
      fill(list, table("Local lists", [
        ["List", (l) => l.name],
        ["Tokens", (l) => String(l.size)],
        ["Holds", (l) => (l.idTokens.length
          ? l.idTokens.join(", ") + (l.size > l.idTokens.length ? ` and ${l.size - l.idTokens.length} more` : "")
          : "–")],
        ["Created", (l) => fmtTime(l.createdAt)],
      ], lists, (l) => ({ "data-list": l.name })));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };

  onSubmit(create, createOut, async () => {
    const made = (await gql(CREATE, { n: name.value.trim() })).createLocalList;
    name.value = "";
    await load();
    target.value = made.id;
    return `List ${made.name} created.`;
  });
  const change = async (mutation, verb) => {
    const chosen = tokensOf(tokens.value);
    if (!target.value) throw new Error("Create a list first.");
    if (!chosen.length) throw new Error("Enter at least one token.");
    const data = await gql(mutation, { l: target.value, t: chosen });
    const done = data.addToLocalList || data.removeFromLocalList;
    tokens.value = "";
    await load();
    changed();
    return `${chosen.length} token${chosen.length === 1 ? "" : "s"} ${verb} ${done.name}; it holds ${done.size} now.`;
  };
  onSubmit(edit, editOut, () => change(ADD, "added to"));
  removeButton.addEventListener("click", () => runInto(editOut, removeButton, () => change(REMOVE, "removed from")));
  return {
    element: h("div", {}, problem, list, h("div", { class: "grid2" }, create, edit)),
    load,
  };
}

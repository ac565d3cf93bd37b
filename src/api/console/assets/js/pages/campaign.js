// One firmware campaign, live (onFirmwareCampaignChanged: whenever it or one of its chargers
// changed): each charger's firmware status as the charger reports it, its attempts and last
// error, a count per state, and a cancel that stops handing the firmware out.

import { gql, subscribe } from "../api.js";
import { h, fill, errorBox, table, badge, confirmButton, fmtTime, announce } from "../ui.js";

/// Chargers shown: the first PAGE by id (what one request, and one update, may cost).
const PAGE = 200;
const FIELDS = `id location status retrieveAt concurrency maxAttempts createdAt
  chargers(first: ${PAGE}) { chargerId status state attempts lastError updatedAt }`;
const DETAILS = `query($id: ID!) { firmwareCampaign(id: $id) { ${FIELDS} } }`;
const LIVE = `subscription($id: ID!) { onFirmwareCampaignChanged(campaignId: $id) { ${FIELDS} } }`;
const CANCEL = `mutation($id: ID!) { cancelFirmwareCampaign(id: $id) { id status } }`;
const STATES = ["QUEUED", "SENT", "DONE", "FAILED", "CANCELLED"];

export function render(main, [id]) {
  const problem = h("div");
  const status = h("span", { id: "campaign-state", "aria-live": "polite" });
  const facts = h("dl", { class: "facts" });
  const counts = h("div", { class: "cards", "aria-live": "polite" });
  const chargers = h("div");
  const actions = h("div", { class: "row" });
  let stopped = false;
  let live = false; // once the subscription has spoken, the first read is older than it
  let running = null;

  const draw = (c) => {
    fill(problem);
    fill(status, badge(c.status, { "data-testid": "campaign-status" }));
    const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value ?? "–")];
    fill(facts,
      fact("Firmware", c.location), fact("Download from", c.retrieveAt ? fmtTime(c.retrieveAt) : "at once"),
      fact("Chargers at once", c.concurrency), fact("Attempts per charger", c.maxAttempts),
      fact("Started", fmtTime(c.createdAt)));
    fill(counts, STATES.map((s) => h("div", { class: "card" },
      h("div", { class: "value", "data-testid": `campaign-${s.toLowerCase()}` }, c.chargers.filter((k) => k.state === s).length),
      h("div", { class: "label" }, s.toLowerCase()))));
    fill(chargers, table("Chargers of the campaign", [
      ["Charger", (k) => h("a", { href: `#/chargers/${encodeURIComponent(k.chargerId)}` }, k.chargerId)],
      ["Firmware status", (k) => h("span", { "data-testid": "firmware-status" }, k.status)],
      ["State", (k) => badge(k.state)],
      ["Attempts", (k) => `${k.attempts} of ${c.maxAttempts}`],
      ["Last error", (k) => k.lastError || "–"],
      ["Since", (k) => fmtTime(k.updatedAt)],
    ], c.chargers, (k) => ({ "data-charger": k.chargerId })));
    const isRunning = c.status === "RUNNING";
    if (isRunning !== running) {
      running = isRunning;
      fill(actions, isRunning ? confirmButton("Cancel the campaign", "Confirm: cancel the campaign", async () => {
        try {
          const done = (await gql(CANCEL, { id })).cancelFirmwareCampaign;
          announce(`The campaign is ${done.status.toLowerCase()}; chargers already updating finish.`);
        } catch (e) {
          fill(problem, errorBox(e));
        }
      }, { id: "campaign-cancel" }) : null);
    }
  };

  fill(main,
    h("p", {}, h("a", { href: "#/firmware" }, "← Firmware campaigns")),
    h("h1", {}, `Campaign ${id.slice(0, 8)} `, status), problem,
    h("section", { class: "panel", "aria-labelledby": "campaign-facts" }, h("h2", { id: "campaign-facts" }, "Campaign"), facts, actions),
    counts,
    h("h2", {}, "Chargers"),
    h("p", { class: "muted" }, `The first ${PAGE} chargers by id. Firmware status: what the charger reported last (or Queued, Sent, Accepted, its refusal, Silent before it reports).`),
    chargers);

  (async () => {
    try {
      const data = await gql(DETAILS, { id });
      if (stopped || live) return;
      if (!data.firmwareCampaign) {
        fill(problem, h("p", { class: "error", role: "alert" }, "There is no such campaign."));
        return;
      }
      draw(data.firmwareCampaign);
    } catch (e) {
      fill(problem, errorBox(e));
    }
  })();
  const unsubscribe = subscribe(LIVE, { id }, (data) => {
    live = true;
    if (!stopped) draw(data.onFirmwareCampaignChanged);
  }, (e) => fill(problem, errorBox(e)));
  return () => {
    stopped = true;
    unsubscribe();
  };
}

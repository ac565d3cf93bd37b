// Firmware campaigns: the newest campaigns, refreshed every two seconds (one campaign's page is
// live), and a form that starts one: an image rolled out to the chosen chargers a few at a time.

import { gql } from "../api.js";
import { h, fill, every, errorBox, table, badge, field, onSubmit, numberOf, fmtTime } from "../ui.js";

const QUERY = `{ firmwareCampaigns(first: 20) { id location status retrieveAt concurrency maxAttempts createdAt } }`;
const CHARGERS = `{ chargers(first: 100) { id online protocol firmwareVersion } }`;
const START = `mutation($i: FirmwareCampaignInput!) { startFirmwareCampaign(input: $i) { id } }`;

function startForm() {
  const checks = h("div", { class: "checks", id: "campaign-chargers" }, h("p", { class: "muted" }, "Loading the chargers…"));
  const others = h("input", { type: "text", autocomplete: "off", placeholder: "e.g. CP-0101, CP-0102" });
  const url = h("input", { type: "url", required: true, placeholder: "https://firmware.example.com/image.bin", size: 40 });
  const retrieveAt = h("input", { type: "datetime-local" });
  const concurrency = h("input", { type: "number", min: 1, max: 1000, value: "10" });
  const attempts = h("input", { type: "number", min: 1, max: 10, value: "3" });
  const signature = h("textarea", { rows: 2, spellcheck: "false" });
  const certificate = h("textarea", { rows: 4, spellcheck: "false" });
  const all = h("button", { type: "button", class: "secondary", id: "campaign-all" }, "Choose every charger listed");
  all.addEventListener("click", () => checks.querySelectorAll("input[type=checkbox]").forEach((c) => { c.checked = true; }));
  const out = h("div", { "data-testid": "campaign-answer" });
  const form = h("form", { class: "panel", id: "start-campaign", "aria-labelledby": "start-campaign-title" },
    h("h2", { id: "start-campaign-title" }, "New campaign"),
    h("fieldset", {}, h("legend", {}, "Chargers (the first 100 by id)"), checks, h("div", { class: "row" }, all)),
    h("div", { class: "form-row" },
      field("campaign-others", "More charger ids", others, "separated by commas"),
      field("campaign-location", "Firmware location (URL)", url),
      field("campaign-retrieve", "Download from", retrieveAt, "empty: at once; your local time"),
      field("campaign-concurrency", "Chargers at once", concurrency),
      field("campaign-attempts", "Attempts per charger", attempts)),
    h("details", {}, h("summary", {}, "Signed firmware (OCPP 2.0.1 and the 1.6 security extension)"),
      h("div", { class: "form-row" },
        field("campaign-signature", "Signature (base64)", signature),
        field("campaign-certificate", "Signing certificate (PEM)", certificate))),
    h("div", { class: "row" }, h("button", { type: "submit", id: "campaign-submit" }, "Start campaign")),
    out);
  onSubmit(form, out, async () => {
    const chosen = [...checks.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value)
      .concat(others.value.split(/[\s,;]+/).map((c) => c.trim()).filter(Boolean));
    if (!chosen.length) throw new Error("Choose at least one charger.");
    const input = {
      chargerIds: [...new Set(chosen)], location: url.value.trim(),
      retrieveAt: retrieveAt.value ? new Date(retrieveAt.value).toISOString() : null,
      concurrency: numberOf(concurrency), maxAttempts: numberOf(attempts),
      signature: signature.value.trim() || null, signingCertificate: certificate.value.trim() || null,
    };
    const campaign = (await gql(START, { i: input })).startFirmwareCampaign;
    location.hash = `#/firmware/${encodeURIComponent(campaign.id)}`;
    return "Campaign started.";
  });
  gql(CHARGERS).then((data) => {
    fill(checks, data.chargers.length ? data.chargers.map((c) => h("label", { class: "check" },
      h("input", { type: "checkbox", value: c.id, name: "charger" }),
      ` ${c.id} `, h("span", { class: "muted" }, [c.protocol, c.firmwareVersion, c.online ? null : "offline"].filter(Boolean).join(", "))))
      : h("p", { class: "muted" }, "No chargers registered."));
  }, (e) => fill(checks, errorBox(e)));
  return form;
}

export function render(main) {
  const problem = h("div");
  const list = h("div", { class: "stack" });
  fill(main, h("h1", {}, "Firmware campaigns"), problem,
    h("p", { class: "muted" }, "The newest 20 campaigns. Open one to follow each charger's progress live."),
    list, startForm());
  return every(2000, async () => {
    try {
      const data = await gql(QUERY);
      fill(problem);
      fill(list, table("Firmware campaigns", [
        ["Campaign", (c) => h("a", { href: `#/firmware/${encodeURIComponent(c.id)}` }, c.id.slice(0, 8))],
        ["Status", (c) => badge(c.status)],
        ["Firmware", (c) => c.location],
        ["At once / attempts", (c) => `${c.concurrency} / ${c.maxAttempts}`],
        ["Download from", (c) => (c.retrieveAt ? fmtTime(c.retrieveAt) : "at once")],
        ["Started", (c) => fmtTime(c.createdAt)],
      ], data.firmwareCampaigns, (c) => ({ "data-campaign": c.id })));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  });
}

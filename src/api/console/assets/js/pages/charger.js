// One charger: live state and connectors (onChargerStatusChanged), facts, every operator
// command with the charger's answer, the command history, configuration or device model,
// sessions, its reservations, its local list, its diagnostics logs, and security events.

import { gql, subscribe } from "../api.js";
import { h, fill, every, errorBox, table, badge, onlineBadge, fmtTime, fmtKWh, announce } from "../ui.js";
import { reservationsOf } from "../parts/reservations.js";
import { chargerLocalList } from "../parts/locallist.js";
import { chargerLogs } from "../parts/logs.js";

const DETAILS = `query($id: ID!) { charger(id: $id) {
  id stationId online protocol vendor model firmwareVersion lastSeen lastBootAt securityProfile registrationStatus
  connectors { connectorId status updatedAt }
} }`;
const LIVE = `subscription($id: ID!) { onChargerStatusChanged(chargerId: $id) { id online lastSeen connectors { connectorId status updatedAt } } }`;
const HISTORY = `query($id: ID!) {
  charger(id: $id) {
    commands(first: 20) { id action ocppAction outcome at }
    securityEvents(first: 20) { id source type techInfo critical occurredAt }
  }
  sessions(chargerId: $id, first: 20) { id status connectorId energyKWh startTime endTime }
}`;
const DEVICE_MODEL = `query($id: ID!) { charger(id: $id) { deviceModel { component evseId variable attributeType value mutability } } }`;

/// Ready-made payloads per protocol; any CSMS-initiated action of the protocol may be sent.
const EXAMPLES = {
  OCPP16: {
    TriggerMessage: { requestedMessage: "StatusNotification" },
    GetConfiguration: {},
    ChangeAvailability: { connectorId: 0, type: "Operative" },
    UnlockConnector: { connectorId: 1 },
    ClearCache: {},
  },
  OCPP201: {
    TriggerMessage: { requestedMessage: "StatusNotification" },
    GetVariables: { getVariableData: [{ component: { name: "OCPPCommCtrlr" }, variable: { name: "HeartbeatInterval" } }] },
    GetBaseReport: { requestId: 1, reportBase: "ConfigurationInventory" },
    ChangeAvailability: { operationalStatus: "Operative" },
    UnlockConnector: { evseId: 1, connectorId: 1 },
    ClearCache: {},
  },
};

export function render(main, [id]) {
  const problem = h("div");
  const state = h("span", { id: "charger-state", "aria-live": "polite" });
  const facts = h("dl", { class: "facts" });
  const connectors = h("div");
  const answer = h("pre", { class: "answer", id: "command-answer", "data-testid": "command-answer", "aria-live": "polite", hidden: true });
  const history = h("div");
  const sessionsBox = h("div");
  const events = h("div");
  const config = h("div");
  const reservations = reservationsOf(id);
  const localList = chargerLocalList(id);
  const logs = chargerLogs(id);
  let protocol = null;

  const drawLive = (c) => {
    fill(state, onlineBadge(c.online, { "data-testid": "charger-state" }));
    fill(connectors, table("Connectors", [
      ["Connector", (k) => (k.connectorId === 0 ? "0 (charger)" : k.connectorId)],
      ["Status", (k) => badge(k.status)],
      ["Since", (k) => fmtTime(k.updatedAt)],
    ], c.connectors, (k) => ({ "data-connector": k.connectorId })));
  };

  const show = (text) => {
    answer.hidden = false;
    answer.textContent = text;
    announce(text.split("\n")[0]);
  };

  const loadHistory = async () => {
    const data = await gql(HISTORY, { id });
    if (!data.charger) return;
    fill(history, table("Commands", [
      ["When", (c) => fmtTime(c.at)],
      ["Command", (c) => c.ocppAction ? `${c.action} (${c.ocppAction})` : c.action],
      ["Outcome", (c) => c.outcome ? badge(c.outcome === "ok" ? "COMPLETED" : c.outcome) : "–"],
    ], data.charger.commands));
    fill(events, table("Security events", [
      ["When", (e) => fmtTime(e.occurredAt)],
      ["Type", (e) => e.type],
      ["Source", (e) => e.source.toLowerCase()],
      ["Critical", (e) => (e.critical ? badge("FAULTED", { title: "critical" }) : "no")],
      ["Details", (e) => e.techInfo || "–"],
    ], data.charger.securityEvents));
    fill(sessionsBox, table("Sessions", [
      ["Session", (s) => h("a", { href: `#/sessions/${s.id}` }, s.id.slice(0, 8))],
      ["Status", (s) => badge(s.status)],
      ["Connector", (s) => s.connectorId ?? "–"],
      ["Energy", (s) => fmtKWh(s.energyKWh)],
      ["Started", (s) => fmtTime(s.startTime)],
      ["Ended", (s) => fmtTime(s.endTime)],
    ], data.sessions));
  };

  const run = async (button, label, work) => {
    button.disabled = true;
    show(`${label}: sent, waiting for the charger…`);
    try {
      show(`${label}: ${await work()}`);
    } catch (e) {
      show(`${label}: ${e.code}: ${e.message}`);
    } finally {
      button.disabled = false;
      loadHistory().catch(() => {});
    }
  };

  const reset = (type) => {
    const button = h("button", { type: "button", id: `reset-${type.toLowerCase()}` }, `Reset (${type.toLowerCase()})`);
    button.addEventListener("click", () => run(button, `Reset (${type.toLowerCase()})`, async () => {
      const data = await gql("mutation($id: ID!, $t: ResetType!) { resetCharger(chargerId: $id, type: $t) }", { id, t: type });
      return data.resetCharger ? "Accepted by the charger" : "Rejected by the charger";
    }));
    return button;
  };

  const action = h("select", { id: "command-action" });
  const payload = h("textarea", { id: "command-payload", rows: 5, spellcheck: "false" });
  const send = h("button", { type: "submit", id: "command-send" }, "Send");
  action.addEventListener("change", () => {
    payload.value = JSON.stringify((EXAMPLES[protocol] || {})[action.value] || {}, null, 2);
  });
  const commandForm = h("form", {},
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "command-action" }, "OCPP action"), action),
      h("div", {}, h("label", { for: "command-payload" }, "Payload (JSON)"), payload)),
    h("div", { class: "row" }, send));
  commandForm.addEventListener("submit", (event) => {
    event.preventDefault();
    let body;
    try {
      body = JSON.parse(payload.value || "{}");
    } catch (e) {
      show(`${action.value}: the payload is not valid JSON (${e.message})`);
      return;
    }
    run(send, action.value, async () => {
      const data = await gql("mutation($id: ID!, $a: String!, $p: JSON!) { sendChargerCommand(chargerId: $id, action: $a, payload: $p) }", { id, a: action.value, p: body });
      return "\n" + JSON.stringify(data.sendChargerCommand, null, 2);
    });
  });

  const readConfig = h("button", { type: "button", class: "secondary", id: "read-config" }, "Read configuration");
  readConfig.addEventListener("click", async () => {
    readConfig.disabled = true;
    try {
      if (protocol === "OCPP201") {
        const data = await gql(DEVICE_MODEL, { id });
        fill(config, table("Device model", [
          ["Component", (v) => v.component + (v.evseId ? ` (EVSE ${v.evseId})` : "")],
          ["Variable", (v) => v.variable],
          ["Attribute", (v) => v.attributeType],
          ["Value", (v) => v.value ?? "–"],
          ["Mutability", (v) => v.mutability ?? "–"],
        ], data.charger.deviceModel));
      } else {
        const data = await gql("mutation($id: ID!) { sendChargerCommand(chargerId: $id, action: \"GetConfiguration\", payload: {}) }", { id });
        const keys = (data.sendChargerCommand && data.sendChargerCommand.configurationKey) || [];
        fill(config, table("Configuration", [
          ["Key", (k) => k.key],
          ["Value", (k) => k.value ?? "–"],
          ["Read-only", (k) => (k.readonly ? "yes" : "no")],
        ], keys));
      }
    } catch (e) {
      fill(config, errorBox(e));
    } finally {
      readConfig.disabled = false;
      loadHistory().catch(() => {});
    }
  });

  fill(main,
    h("p", {}, h("a", { href: "#/chargers" }, "← Chargers")),
    h("h1", {}, `Charger ${id} `, state), problem,
    h("div", { class: "grid2" },
      h("section", { class: "panel", "aria-labelledby": "facts-title" }, h("h2", { id: "facts-title" }, "Facts"), facts),
      h("section", { class: "panel", "aria-labelledby": "commands-title" },
        h("h2", { id: "commands-title" }, "Commands"),
        h("div", { class: "row" }, reset("SOFT"), reset("HARD")),
        h("h3", {}, "Any OCPP command"), commandForm, answer)),
    h("h2", {}, "Connectors"), connectors,
    h("h2", {}, "Command history"), history,
    h("h2", {}, "Sessions"), sessionsBox,
    h("h2", {}, "Reservations"), reservations.element,
    h("h2", {}, "Diagnostics and logs"), logs.element,
    h("h2", {}, "Local authorization list"), localList.element,
    h("h2", {}, "Configuration"), h("div", { class: "row" }, readConfig), config,
    h("h2", {}, "Security events"), events);

  (async () => {
    try {
      const data = await gql(DETAILS, { id });
      const c = data.charger;
      if (!c) {
        fill(problem, h("p", { class: "error", role: "alert" }, `There is no charger ${id}.`));
        return;
      }
      protocol = c.protocol || "OCPP16";
      fill(action, Object.keys(EXAMPLES[protocol]).map((a) => h("option", { value: a }, a)));
      action.dispatchEvent(new Event("change"));
      const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value ?? "–")];
      fill(facts,
        fact("Protocol", c.protocol), fact("Vendor", c.vendor), fact("Model", c.model),
        fact("Firmware", c.firmwareVersion), fact("Registration", c.registrationStatus),
        fact("Security profile", c.securityProfile), fact("Last boot", fmtTime(c.lastBootAt)),
        fact("Last seen", fmtTime(c.lastSeen)),
        fact("Station", c.stationId ? h("a", { href: "#/map" }, c.stationId) : "–"));
      drawLive(c);
    } catch (e) {
      fill(problem, errorBox(e));
    }
  })();
  const unsubscribe = subscribe(LIVE, { id }, (data) => drawLive(data.onChargerStatusChanged), (e) => fill(problem, errorBox(e)));
  const stopPolling = every(5000, () => Promise.all([loadHistory(), reservations.load(), logs.load()]).catch((e) => fill(problem, errorBox(e))));
  return () => {
    unsubscribe();
    stopPolling();
    localList.stop();
  };
}

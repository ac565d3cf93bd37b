// A charger's diagnostics and security logs: ask for one (the charger uploads it to this
// server), follow its upload, and download it. The download needs the bearer token, which a
// plain link cannot carry: the file is fetched, then saved from memory.

import { gql, download } from "../api.js";
import { h, fill, errorBox, table, badge, field, runInto, fmtTime } from "../ui.js";

const QUERY = `query($c: ID!) { chargerLogs(chargerId: $c, first: 20) { id type status chargerStatus fileName sizeBytes requestedAt uploadedAt downloadPath } }`;
const REQUEST = `mutation($c: ID!, $t: ChargerLogType) { requestChargerLog(chargerId: $c, type: $t) { id status fileName } }`;

function size(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/// { element, load } for charger `chargerId`.
export function chargerLogs(chargerId) {
  const problem = h("div");
  const list = h("div");
  const kind = h("select", {}, h("option", { value: "DIAGNOSTICS" }, "diagnostics"), h("option", { value: "SECURITY" }, "security log"));
  const ask = h("button", { type: "button", id: "log-request" }, "Request the log");
  const out = h("div", { id: "log-answer", "data-testid": "log-answer", "aria-live": "polite" });
  let drawn = null;

  const save = async (log, button) => {
    await runInto(out, button, async () => {
      const file = await download(log.downloadPath);
      const url = URL.createObjectURL(file.blob);
      const link = h("a", { href: url, download: file.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      return `${file.name} downloaded (${size(file.blob.size)}).`;
    });
  };

  const load = async () => {
    try {
      const data = await gql(QUERY, { c: chargerId });
      fill(problem);
      const key = JSON.stringify(data.chargerLogs);
      if (key === drawn) return;
      drawn = key;
      fill(list, table(`Logs of ${chargerId}`, [
        ["Requested", (l) => fmtTime(l.requestedAt)],
        ["Log", (l) => l.type.toLowerCase()],
        ["Status", (l) => badge(l.status, { "data-testid": "log-status" })],
        ["The charger said", (l) => l.chargerStatus || "–"],
        ["File", (l) => l.fileName || "–"],
        ["Size", (l) => size(l.sizeBytes)],
        ["Uploaded", (l) => fmtTime(l.uploadedAt)],
        ["Download", (l) => {
          if (!l.downloadPath) return "–";
          const button = h("button", { type: "button", class: "secondary", "data-download": l.id }, `Download ${l.fileName || "the log"}`);
          button.addEventListener("click", () => save(l, button));
          return button;
        }],
      ], data.chargerLogs, (l) => ({ "data-log": l.id })));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };

  ask.addEventListener("click", () => runInto(out, ask, async () => {
    const log = (await gql(REQUEST, { c: chargerId, t: kind.value })).requestChargerLog;
    await load();
    return `The charger accepted: it uploads ${log.fileName || "its log"} to this server.`;
  }));
  return {
    element: h("div", {}, problem,
      h("div", { class: "row" }, field("log-type", "Log", kind), ask),
      out, list),
    load,
  };
}

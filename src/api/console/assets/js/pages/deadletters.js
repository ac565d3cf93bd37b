// Dead-letter queues (ADMIN): how many events each consumer queue gave up on, why, and a replay
// that moves them back for another try. Bodies are never shown: events carry personal data.

import { gql } from "../api.js";
import { h, fill, errorBox, table, fmtTime, announce } from "../ui.js";

const QUERY = `{ deadLetterQueues(first: 20) { queue depth first { eventType eventId reason attempts publishedAt bytes } } }`;

export function render(main) {
  const problem = h("div");
  const queues = h("div");
  const answer = h("p", { id: "replay-answer", "data-testid": "replay-answer", role: "status" });
  let stopped = false;
  const load = async () => {
    try {
      const data = await gql(QUERY);
      if (stopped) return;
      fill(problem);
      fill(queues, data.deadLetterQueues.map((q) => {
        const replay = h("button", { type: "button", class: "secondary", "data-queue": q.queue, disabled: q.depth === 0 }, `Replay ${q.depth} into ${q.queue}`);
        replay.addEventListener("click", async () => {
          replay.disabled = true;
          try {
            const moved = (await gql("mutation($q: String!) { replayDeadLetters(queue: $q) }", { q: q.queue })).replayDeadLetters;
            answer.textContent = `${moved} message${moved === 1 ? "" : "s"} moved back into ${q.queue}.`;
          } catch (e) {
            answer.textContent = `Replay of ${q.queue}: ${e.code}: ${e.message}`;
          }
          announce(answer.textContent);
          load();
        });
        return h("section", { class: "panel", "aria-label": q.queue, "data-dlq": q.queue },
          h("h2", {}, q.queue, " ", h("span", { class: "muted", "data-testid": "dlq-depth" }, `${q.depth} dead letter${q.depth === 1 ? "" : "s"}`)),
          table(`Dead letters of ${q.queue}`, [
            ["Event", (l) => l.eventType || "not an event"],
            ["Event id", (l) => l.eventId || "–"],
            ["Why", (l) => l.reason || "–"],
            ["Attempts", (l) => l.attempts ?? "–"],
            ["Published", (l) => fmtTime(l.publishedAt)],
            ["Size", (l) => `${l.bytes} B`],
          ], q.first),
          h("div", { class: "row" }, replay));
      }));
    } catch (e) {
      fill(problem, e.code === "FORBIDDEN"
        ? h("p", { class: "error", role: "alert" }, "The dead-letter queues are for administrators (ADMIN).")
        : errorBox(e));
    }
  };
  fill(main, h("h1", {}, "Dead-letter queue"),
    h("p", { class: "muted" }, "Events a worker gave up on after its retries. Replaying moves them back into their queue; one that fails again returns here."),
    problem, answer, queues);
  load();
  return () => { stopped = true; };
}

// Invoices and wallets, read-only: what billing wrote and what each driver holds.

import { gql } from "../api.js";
import { h, fill, errorBox, table, badge, fmtTime, fmtMoney } from "../ui.js";

const QUERY = `query($status: InvoiceStatus) {
  invoices(status: $status, first: 100) { id sessionId userId amount currency status dueDate paidAt }
  users(role: DRIVER, first: 100) { id name email walletBalance walletCurrency }
}`;

export function render(main) {
  const status = h("select", { id: "invoice-status" },
    [["", "any"], ["PENDING", "pending"], ["PAID", "paid"], ["OVERDUE", "overdue"], ["VOID", "void"]]
      .map(([value, text]) => h("option", { value }, text)));
  const problem = h("div"), invoices = h("div"), wallets = h("div");
  const load = async () => {
    try {
      const data = await gql(QUERY, { status: status.value || null });
      fill(problem);
      fill(invoices, table("Invoices", [
        ["Invoice", (i) => i.id.slice(0, 8)],
        ["Session", (i) => h("a", { href: `#/sessions/${i.sessionId}` }, i.sessionId.slice(0, 8))],
        ["Amount", (i) => fmtMoney(i.amount, i.currency)],
        ["Status", (i) => badge(i.status)],
        ["Due", (i) => fmtTime(i.dueDate)],
        ["Paid", (i) => fmtTime(i.paidAt)],
      ], data.invoices));
      fill(wallets, table("Wallets", [
        ["Driver", (u) => u.name],
        ["Email", (u) => u.email],
        ["Balance", (u) => fmtMoney(u.walletBalance, u.walletCurrency)],
      ], data.users));
    } catch (e) {
      fill(problem, errorBox(e));
    }
  };
  status.addEventListener("change", load);
  fill(main, h("h1", {}, "Invoices & wallets"), problem,
    h("h2", {}, "Invoices"),
    h("div", { class: "filters" }, h("div", {}, h("label", { for: "invoice-status" }, "Status"), status)),
    invoices, h("h2", {}, "Wallets"), wallets);
  load();
  return () => {};
}

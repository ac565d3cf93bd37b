// Sign-in: OPERATOR and ADMIN only. A driver's account is refused here, and its sign-in is
// ended on the server at once.

import { login, logout, saveSession, ApiError } from "../api.js";
import { h, fill } from "../ui.js";

const STAFF = ["OPERATOR", "ADMIN"];

export function render(main) {
  const message = h("div", { id: "signin-message", role: "alert" });
  const notice = sessionStorage.getItem("cg.notice");
  if (notice) {
    sessionStorage.removeItem("cg.notice");
    fill(message, h("p", { class: "error" }, notice));
  }
  const email = h("input", { id: "email", name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit", id: "signin-submit" }, "Sign in");
  const form = h("form", { class: "panel", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "email" }, "Email"), email),
    h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
    submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    fill(message);
    if (!email.value.trim() || !password.value) {
      fill(message, h("p", { class: "error" }, "Enter your email and password."));
      return;
    }
    submit.disabled = true;
    try {
      const payload = await login(email.value.trim(), password.value);
      if (!STAFF.includes(payload.user.role)) {
        await logout(payload.refreshToken);
        fill(message, h("p", { class: "error", "data-testid": "refused" },
          `This console is for operators and administrators. ${payload.user.email} is a ${payload.user.role.toLowerCase()} account: use the chargegrid app instead.`));
        password.value = "";
        return;
      }
      saveSession(payload);
      window.dispatchEvent(new Event("cg:signed-in"));
    } catch (e) {
      const text = e instanceof ApiError && e.code === "UNAUTHENTICATED"
        ? "Wrong email or password."
        : e.message;
      fill(message, h("p", { class: "error" }, text));
    } finally {
      submit.disabled = false;
    }
  });
  fill(main,
    h("section", { class: "signin", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in to the operator console"),
      h("p", { class: "muted" }, "For OPERATOR and ADMIN accounts."),
      message, form));
  email.focus();
  return () => {};
}

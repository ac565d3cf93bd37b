// The console's shell: the hash router, the navigation and who is signed in. Each page module
// exports render(main, params) and returns a function that stops its polling and subscriptions.

import { session, logout } from "./api.js";
import { fill } from "./ui.js";
import * as signin from "./pages/signin.js";
import * as overview from "./pages/overview.js";
import * as chargers from "./pages/chargers.js";
import * as charger from "./pages/charger.js";
import * as sessions from "./pages/sessions.js";
import * as sessionPage from "./pages/session.js";
import * as map from "./pages/map.js";
import * as billing from "./pages/billing.js";
import * as deadLetters from "./pages/deadletters.js";
import * as sites from "./pages/sites.js";
import * as site from "./pages/site.js";
import * as reservations from "./pages/reservations.js";
import * as tokens from "./pages/tokens.js";
import * as firmware from "./pages/firmware.js";
import * as campaign from "./pages/campaign.js";

const ROUTES = [
  [/^#\/overview$/, overview, "Overview"],
  [/^#\/chargers(?:\?station=([^&]+))?$/, chargers, "Chargers"],
  [/^#\/chargers\/(.+)$/, charger, "Charger"],
  [/^#\/sessions$/, sessions, "Sessions"],
  [/^#\/sessions\/(.+)$/, sessionPage, "Session"],
  [/^#\/map$/, map, "Stations map"],
  [/^#\/billing$/, billing, "Invoices & wallets"],
  [/^#\/dead-letters$/, deadLetters, "Dead-letter queue"],
  [/^#\/sites$/, sites, "Sites & load"],
  [/^#\/sites\/(.+)$/, site, "Site"],
  [/^#\/reservations(?:\?charger=([^&]+))?$/, reservations, "Reservations"],
  [/^#\/tokens$/, tokens, "RFID cards"],
  [/^#\/firmware$/, firmware, "Firmware campaigns"],
  [/^#\/firmware\/(.+)$/, campaign, "Firmware campaign"],
];

export const STAFF = ["OPERATOR", "ADMIN"];

let stop = () => {};

function showChrome(user) {
  const signedIn = Boolean(user);
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("signout").hidden = !signedIn;
  const who = document.getElementById("whoami");
  who.hidden = !signedIn;
  who.textContent = signedIn ? `${user.name} (${user.role.toLowerCase()})` : "";
}

function route() {
  stop();
  stop = () => {};
  const main = document.getElementById("main");
  const current = session();
  if (!current || !STAFF.includes(current.user.role)) {
    showChrome(null);
    document.title = "Sign in · chargegrid console";
    stop = signin.render(main, {}) || (() => {});
    return;
  }
  showChrome(current.user);
  const hash = location.hash || "#/overview";
  const match = ROUTES.find(([pattern]) => pattern.test(hash));
  if (!match) {
    location.replace("#/overview");
    return;
  }
  const [pattern, page, title] = match;
  const params = hash.match(pattern).slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
  for (const a of document.querySelectorAll("#nav a")) {
    const href = a.getAttribute("href");
    const here = hash === href || hash.startsWith(href + "/") || hash.startsWith(href + "?");
    if (here) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${title} · chargegrid console`;
  fill(main);
  stop = page.render(main, params) || (() => {});
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
window.addEventListener("cg:signed-in", route);
window.addEventListener("cg:signed-out", (event) => {
  sessionStorage.setItem("cg.notice", event.detail || "");
  route();
});
document.getElementById("signout").addEventListener("click", async () => {
  const current = session();
  await logout(current && current.refresh);
  location.hash = "#/overview";
  route();
});
route();

// The console's only way to the server: the public GraphQL API, over HTTP POST for queries and
// mutations and graphql-transport-ws for subscriptions, exactly as third-party clients use it.
// Tokens live in sessionStorage: closing the tab signs out.

const STORE = sessionStorage;

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code || "INTERNAL";
  }
}

export function session() {
  const user = STORE.getItem("cg.user");
  return user ? { access: STORE.getItem("cg.access"), refresh: STORE.getItem("cg.refresh"), user: JSON.parse(user) } : null;
}

export function saveSession(payload) {
  STORE.setItem("cg.access", payload.accessToken);
  STORE.setItem("cg.refresh", payload.refreshToken);
  STORE.setItem("cg.user", JSON.stringify(payload.user));
}

export function clearSession() {
  ["cg.access", "cg.refresh", "cg.user"].forEach((k) => STORE.removeItem(k));
  closeSocket();
}

async function post(query, variables, token) {
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: Object.assign({ "Content-Type": "application/json" }, token ? { Authorization: "Bearer " + token } : {}),
      body: JSON.stringify({ query, variables: variables || {} }),
    });
  } catch (e) {
    throw new ApiError("The server cannot be reached.", "NETWORK");
  }
  let body;
  try {
    body = await response.json();
  } catch (e) {
    throw new ApiError("The server answered " + response.status + " without a GraphQL body.", "INTERNAL");
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    throw new ApiError(first.message, first.extensions && first.extensions.code);
  }
  return body.data;
}

let refreshing = null;

async function refresh() {
  const current = session();
  if (!current || !current.refresh) throw new ApiError("Signed out.", "UNAUTHENTICATED");
  const data = await post(
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id name email role } } }",
    { t: current.refresh },
  );
  saveSession(data.refreshToken);
}

/// Runs one query or mutation as the signed-in user; an expired access token is refreshed once.
export async function gql(query, variables) {
  const current = session();
  try {
    return await post(query, variables, current && current.access);
  } catch (e) {
    if (e.code !== "UNAUTHENTICATED" || !current) throw e;
    refreshing = refreshing || refresh().finally(() => { refreshing = null; });
    try {
      await refreshing;
    } catch (r) {
      clearSession();
      window.dispatchEvent(new CustomEvent("cg:signed-out", { detail: "Your sign-in has ended; sign in again." }));
      throw e;
    }
    return post(query, variables, session().access);
  }
}

/// Fetches a staff-only file (`GET /api/logs/{id}`) with the bearer token, which a plain link
/// cannot carry; returns { blob, name }. An expired access token is refreshed once.
export async function download(path) {
  const get = () => fetch(path, { headers: { Authorization: "Bearer " + ((session() || {}).access || "") } });
  let response;
  try {
    response = await get();
    if (response.status === 401 && session()) {
      refreshing = refreshing || refresh().finally(() => { refreshing = null; });
      await refreshing;
      response = await get();
    }
  } catch (e) {
    throw new ApiError(e instanceof ApiError ? e.message : "The server cannot be reached.", e.code || "NETWORK");
  }
  if (!response.ok) throw new ApiError(`The server answered ${response.status}.`, response.status === 403 ? "FORBIDDEN" : "INTERNAL");
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = disposition.match(/filename="([^"]+)"/);
  return { blob: await response.blob(), name: named ? named[1] : path.split("/").pop() };
}

/// Signs in; returns the user. The caller decides whether the role may use the console.
export async function login(email, password) {
  const data = await post(
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken user { id name email role } } }",
    { e: email, p: password },
  );
  return data.login;
}

/// Ends the sign-in on the server (revokes the refresh token), then forgets it here.
export async function logout(refreshToken) {
  try {
    if (refreshToken) await post("mutation($t: String!) { logout(refreshToken: $t) }", { t: refreshToken });
  } catch (e) {
    // the token is forgotten below either way
  }
  clearSession();
}

// --- subscriptions (graphql-transport-ws) ----------------------------------------------------

let socket = null;
let acked = false;
let nextId = 1;
let retry = 0;
const active = new Map(); // id -> { query, variables, onData, onError }

function wsUrl() {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function openSocket() {
  if (socket) return;
  const current = session();
  if (!current) return;
  acked = false;
  socket = new WebSocket(wsUrl(), "graphql-transport-ws");
  socket.onopen = () => send({ type: "connection_init", payload: { authorization: "Bearer " + current.access } });
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    switch (message.type) {
      case "connection_ack":
        acked = true;
        retry = 0;
        for (const [id, sub] of active) send({ id, type: "subscribe", payload: { query: sub.query, variables: sub.variables } });
        break;
      case "ping":
        send({ type: "pong" });
        break;
      case "next": {
        const sub = active.get(message.id);
        if (!sub) break;
        const { data, errors } = message.payload;
        if (errors && errors.length) sub.onError(new ApiError(errors[0].message, errors[0].extensions && errors[0].extensions.code));
        else sub.onData(data);
        break;
      }
      case "error": {
        const sub = active.get(message.id);
        active.delete(message.id);
        const first = (message.payload || [])[0] || {};
        if (sub) sub.onError(new ApiError(first.message || "subscription refused", first.extensions && first.extensions.code));
        break;
      }
      case "complete":
        active.delete(message.id);
        break;
    }
  };
  socket.onclose = (event) => {
    socket = null;
    acked = false;
    if (!active.size || !session()) return;
    const signedOut = (text) => {
      clearSession();
      window.dispatchEvent(new CustomEvent("cg:signed-out", { detail: text }));
    };
    if (event.code === 4403) {
      signedOut("Your sign-in was revoked or your role changed; sign in again.");
      return;
    }
    // a restarted server, a dropped network, or (4401) an expired access token: come back,
    // with a fresh token if needed, and resubscribe everything
    retry = Math.min(retry + 1, 5);
    const again = () => setTimeout(openSocket, 500 * retry);
    if (event.code === 4401) {
      refreshing = refreshing || refresh().finally(() => { refreshing = null; });
      refreshing.then(again, () => signedOut("Your sign-in has ended; sign in again."));
    } else {
      again();
    }
  };
}

function closeSocket() {
  active.clear();
  if (socket) {
    const s = socket;
    socket = null;
    s.close(1000);
  }
}

/// Subscribes; onData gets each `data` object. Returns a function that ends the subscription.
export function subscribe(query, variables, onData, onError) {
  const id = String(nextId++);
  active.set(id, { query, variables, onData, onError: onError || (() => {}) });
  if (!socket) openSocket();
  else if (acked) send({ id, type: "subscribe", payload: { query, variables } });
  return () => {
    if (active.delete(id)) send({ id, type: "complete" });
  };
}

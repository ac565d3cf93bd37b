//! A small GraphQL client for the contract schema: POST for queries and mutations, and
//! `graphql-transport-ws` for `onSessionStatusChanged`. Errors keep the contract's
//! `extensions.code` so the app flow can tell CHARGER_OFFLINE (retry) from a real failure.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// A failed GraphQL operation.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum GqlError {
    /// The request did not get a GraphQL answer.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with an error.
    #[error("{code}: {message}")]
    Api {
        /// `extensions.code` (or `GRAPHQL_VALIDATION` when absent).
        code: String,
        /// Human message.
        message: String,
    },
}

impl GqlError {
    /// The contract error code, or `TRANSPORT`.
    pub fn code(&self) -> &str {
        match self {
            GqlError::Transport(_) => "TRANSPORT",
            GqlError::Api { code, .. } => code,
        }
    }
}

/// A GraphQL endpoint.
#[derive(Clone)]
pub struct Gql {
    http: reqwest::Client,
    url: String,
    /// An ADMIN's credentials, to fund drivers with `creditWallet` where `topUpWallet` (the
    /// development payment provider) is refused, and the token once signed in.
    funder: Option<(String, String)>,
    funder_token: std::sync::Arc<tokio::sync::OnceCell<Option<String>>>,
}

impl Gql {
    /// A client for `url` (`http://host:port/graphql`).
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.to_string(),
            funder: None,
            funder_token: Default::default(),
        }
    }

    /// Funds drivers as this ADMIN (`creditWallet`) when the server has no development payment
    /// provider.
    pub fn with_funder(mut self, email: &str, password: &str) -> Self {
        self.funder = Some((email.to_string(), password.to_string()));
        self
    }

    /// Runs one operation and returns its `data`.
    pub async fn request(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> Result<Value, GqlError> {
        let mut request = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GqlError::Transport(e.to_string()))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| GqlError::Transport(e.to_string()))?;
        if let Some(error) = body["errors"].as_array().and_then(|e| e.first()) {
            return Err(GqlError::Api {
                code: error["extensions"]["code"]
                    .as_str()
                    .unwrap_or("GRAPHQL_VALIDATION")
                    .to_string(),
                message: error["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(body["data"].clone())
    }

    /// Whether the server's schema has this mutation. Uses introspection; when introspection is
    /// off, sends the mutation unauthenticated and looks at how it is refused.
    pub async fn has_mutation(&self, name: &str, probe: &str) -> Result<bool, GqlError> {
        match self
            .request(
                "{ __schema { mutationType { fields { name } } } }",
                json!({}),
                None,
            )
            .await
        {
            Ok(data) => Ok(data["__schema"]["mutationType"]["fields"]
                .as_array()
                .is_some_and(|fields| fields.iter().any(|f| f["name"] == name))),
            Err(GqlError::Api { .. }) => match self.request(probe, json!({}), None).await {
                Ok(_) => Ok(true),
                // a known mutation is refused for want of a token; an unknown one fails validation
                Err(GqlError::Api { code, .. }) => {
                    Ok(code == "UNAUTHENTICATED" || code == "FORBIDDEN")
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Registers a driver: (access token, idTag).
    pub async fn register(
        &self,
        email: &str,
        password: &str,
    ) -> Result<(String, String), GqlError> {
        let data = self
            .request(
                "mutation($input: RegisterInput!) { register(input: $input) { accessToken user { idTag } } }",
                json!({ "input": { "email": email, "name": "Simulated Driver", "password": password } }),
                None,
            )
            .await?;
        let payload = &data["register"];
        Ok((
            payload["accessToken"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            payload["user"]["idTag"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    }

    /// Logs in: the access token.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, GqlError> {
        let data = self
            .request(
                "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken } }",
                json!({ "email": email, "password": password }),
                None,
            )
            .await?;
        Ok(data["login"]["accessToken"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Tops up the wallet, idempotent per key: `topUpWallet` where the server runs the
    /// development payment provider, else a `creditWallet` by the funder (an ADMIN).
    pub async fn top_up(&self, token: &str, amount: &str, key: &str) -> Result<(), GqlError> {
        let direct = self
            .request(
                "mutation($amount: Decimal!, $key: String!) { topUpWallet(amount: $amount, idempotencyKey: $key) { walletBalance } }",
                json!({ "amount": amount, "key": key }),
                Some(token),
            )
            .await;
        match direct {
            Err(e) if e.code() == "FORBIDDEN" && self.funder.is_some() => {}
            other => return other.map(|_| ()),
        }
        let funder = self
            .funder_token
            .get_or_init(|| async {
                let (email, password) = self.funder.clone()?;
                self.login(&email, &password).await.ok()
            })
            .await
            .clone()
            .ok_or_else(|| GqlError::Transport("the funder could not sign in".into()))?;
        let me = self
            .request("{ me { id } }", json!({}), Some(token))
            .await?;
        self.request(
            "mutation($u: ID!, $amount: Decimal!, $key: String!) { creditWallet(userId: $u, amount: $amount, reason: \"simulated driver\", idempotencyKey: $key) { walletBalance } }",
            json!({ "u": me["me"]["id"], "amount": amount, "key": key }),
            Some(&funder),
        )
        .await
        .map(|_| ())
    }

    /// Attaches a charger to a station (OPERATOR).
    pub async fn register_charger(
        &self,
        token: &str,
        charger_id: &str,
        station_id: &str,
        password: Option<&str>,
    ) -> Result<(), GqlError> {
        self.request(
            "mutation($input: RegisterChargerInput!) { registerCharger(input: $input) { id } }",
            json!({ "input": { "chargerId": charger_id, "stationId": station_id, "password": password, "securityProfile": 1 } }),
            Some(token),
        )
        .await
        .map(|_| ())
    }

    /// `startSession`: (session id, status).
    pub async fn start_session(
        &self,
        token: &str,
        station_id: &str,
        charger_id: &str,
    ) -> Result<(String, String), GqlError> {
        let data = self
            .request(
                "mutation($input: StartSessionInput!) { startSession(input: $input) { id status } }",
                json!({ "input": { "stationId": station_id, "chargerId": charger_id } }),
                Some(token),
            )
            .await?;
        let s = &data["startSession"];
        Ok((
            s["id"].as_str().unwrap_or_default().to_string(),
            s["status"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// `endSession`: the status it returns.
    pub async fn end_session(&self, token: &str, session_id: &str) -> Result<String, GqlError> {
        let data = self
            .request(
                "mutation($id: ID!) { endSession(sessionId: $id) { id status } }",
                json!({ "id": session_id }),
                Some(token),
            )
            .await?;
        Ok(data["endSession"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Subscribes to `onSessionStatusChanged` over graphql-transport-ws; statuses arrive on the
    /// channel until the subscription ends or the receiver is dropped.
    pub async fn watch_session(
        &self,
        token: &str,
        session_id: &str,
    ) -> Result<mpsc::Receiver<String>, GqlError> {
        let ws_url = self.url.replacen("http", "ws", 1);
        let mut request = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| GqlError::Transport(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| GqlError::Transport(e.to_string()))?;
        let send = |v: Value| Message::Text(v.to_string());
        ws.send(send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } })))
            .await
            .map_err(|e| GqlError::Transport(e.to_string()))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    match v["type"].as_str() {
                        Some("connection_ack") => break,
                        Some("ping") => {
                            let _ = ws.send(send(json!({ "type": "pong" }))).await;
                        }
                        _ => return Err(GqlError::Transport(format!("unexpected {text}"))),
                    }
                }
                Some(Ok(_)) => {}
                other => {
                    return Err(GqlError::Transport(format!(
                        "subscription socket closed: {other:?}"
                    )))
                }
            }
        }
        ws.send(send(json!({
            "id": "1",
            "type": "subscribe",
            "payload": {
                "query": "subscription($id: ID!) { onSessionStatusChanged(sessionId: $id) { id status energyKWh } }",
                "variables": { "id": session_id }
            }
        })))
        .await
        .map_err(|e| GqlError::Transport(e.to_string()))?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // the socket closes when the session is over or the app stops listening: an app
            // that left its sockets open would hit the server's per-user cap after a few sessions
            loop {
                let message = tokio::select! {
                    message = ws.next() => message,
                    _ = tx.closed() => break,
                };
                let Some(Ok(message)) = message else {
                    break;
                };
                let Message::Text(text) = message else {
                    continue;
                };
                let v: Value = serde_json::from_str(&text).unwrap_or_default();
                match v["type"].as_str() {
                    Some("next") => {
                        let status = v["payload"]["data"]["onSessionStatusChanged"]["status"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string();
                        let over = matches!(status.as_str(), "COMPLETED" | "REJECTED" | "FAILED");
                        if tx.send(status).await.is_err() || over {
                            break;
                        }
                    }
                    Some("ping") => {
                        let _ = ws
                            .send(Message::Text(json!({ "type": "pong" }).to_string()))
                            .await;
                    }
                    Some("error" | "complete") => break,
                    _ => {}
                }
            }
            let _ = ws.close(None).await;
        });
        Ok(rx)
    }
}

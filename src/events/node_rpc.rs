//! Commands for chargers held by another replica. Each replica consumes its own queue
//! `<ns>.node.<NODE_ID>`; a caller publishes the command there (mandatory, so a queue nobody
//! consumes any more is reported back) with `reply_to` = the caller's private reply queue and a
//! `correlation_id`, and waits with the same timeout as a local command. Messages expire with
//! that timeout, so a command is never executed after its caller gave up.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{oneshot, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::topology::Topology;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::amqp::Amqp;

/// What one replica asks another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum NodeRequest {
    /// Run a command on a charger this node holds.
    Execute {
        charger_id: String,
        command: ChargerCommand,
    },
    /// A newer connection for the charger is held elsewhere: close this one.
    Release {
        charger_id: String,
        connection_id: Uuid,
    },
    /// A session command for a charger this node holds (its session actors live here).
    Session {
        command: crate::actors::messages::SessionCommand,
    },
    /// A session of a charger this node holds changed elsewhere (e.g. an app session created by
    /// another replica's API): its actor, here, reads it from Postgres.
    SessionChanged { session_id: Uuid },
}

/// How long an idle node queue survives its node.
const NODE_QUEUE_EXPIRES_MS: i64 = 60_000;

pub fn node_queue(topology: &Topology, node_id: &str) -> String {
    format!("{}.node.{node_id}", topology.namespace)
}

/// The client side: sends requests and matches replies by correlation id.
#[derive(Clone)]
pub struct NodeRpc {
    inner: Arc<Inner>,
}

struct Inner {
    amqp: Amqp,
    topology: Topology,
    reply_queue: String,
    waiting: DashMap<String, oneshot::Sender<Result<Value, CommandError>>>,
    channel: Mutex<Option<Channel>>,
}

impl NodeRpc {
    /// Starts the reply consumer; it lives until `shutdown`.
    pub fn start(
        amqp: Amqp,
        topology: Topology,
        node_id: &str,
        shutdown: CancellationToken,
    ) -> Self {
        let rpc = Self {
            inner: Arc::new(Inner {
                reply_queue: format!(
                    "{}.reply.{node_id}.{}",
                    topology.namespace,
                    Uuid::new_v4().simple()
                ),
                amqp,
                topology,
                waiting: DashMap::new(),
                channel: Mutex::new(None),
            }),
        };
        let consumer = rpc.clone();
        tokio::spawn(async move { consumer.consume_replies(shutdown).await });
        rpc
    }

    async fn channel(&self) -> Result<Channel, CommandError> {
        let mut slot = self.inner.channel.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self
            .inner
            .amqp
            .channel_when_ready(Duration::from_secs(2))
            .await
            .map_err(|_| CommandError::Offline)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|_| CommandError::Offline)?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Sends `request` to `node` without waiting for an answer.
    pub async fn notify(&self, node: &str, request: &NodeRequest) -> Result<(), CommandError> {
        let channel = self.channel().await?;
        let body = serde_json::to_vec(request).map_err(|e| CommandError::Invalid(e.to_string()))?;
        let properties = BasicProperties::default().with_expiration(ShortString::from("30000"));
        channel
            .basic_publish(
                "",
                &node_queue(&self.inner.topology, node),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await
            .map_err(|_| CommandError::Offline)?;
        Ok(())
    }

    /// Runs `command` on the charger held by `node`, waiting at most `timeout`.
    pub async fn execute(
        &self,
        node: &str,
        charger_id: &str,
        command: ChargerCommand,
        timeout: Duration,
    ) -> Result<Value, CommandError> {
        let request = NodeRequest::Execute {
            charger_id: charger_id.to_string(),
            command,
        };
        self.request(node, &request, timeout).await
    }

    /// Sends `request` to `node` and waits at most `timeout` for its answer.
    pub async fn request(
        &self,
        node: &str,
        request: &NodeRequest,
        timeout: Duration,
    ) -> Result<Value, CommandError> {
        let channel = self.channel().await?;
        let correlation = Uuid::new_v4().to_string();
        let body = serde_json::to_vec(request).map_err(|e| CommandError::Invalid(e.to_string()))?;
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.insert(correlation.clone(), tx);
        let properties = BasicProperties::default()
            .with_reply_to(ShortString::from(self.inner.reply_queue.as_str()))
            .with_correlation_id(ShortString::from(correlation.as_str()))
            .with_expiration(ShortString::from(timeout.as_millis().to_string()));
        let sent = async {
            let confirm = channel
                .basic_publish(
                    "",
                    &node_queue(&self.inner.topology, node),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &body,
                    properties,
                )
                .await?
                .await?;
            Ok::<_, lapin::Error>(confirm)
        }
        .await;
        match sent {
            // routed nowhere: that replica is gone
            Ok(Confirmation::Ack(Some(_))) | Ok(Confirmation::Nack(_)) | Err(_) => {
                self.inner.waiting.remove(&correlation);
                return Err(CommandError::Offline);
            }
            Ok(_) => {}
        }
        let result = match tokio::time::timeout(timeout + Duration::from_secs(2), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CommandError::Offline),
            Err(_) => Err(CommandError::Timeout),
        };
        self.inner.waiting.remove(&correlation);
        result
    }

    async fn consume_replies(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            if let Err(e) = self.consume_once(&shutdown).await {
                tracing::warn!(error = %e, "node reply consumer interrupted; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }

    async fn consume_once(&self, shutdown: &CancellationToken) -> Result<(), String> {
        let channel = self
            .inner
            .amqp
            .channel_when_ready(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())?;
        channel
            .queue_declare(
                &self.inner.reply_queue,
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut consumer = channel
            .basic_consume(
                &self.inner.reply_queue,
                "replies",
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let delivery = tokio::select! {
                d = consumer.next() => d,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let delivery = delivery
                .ok_or("reply stream ended")?
                .map_err(|e| e.to_string())?;
            let Some(correlation) = delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.to_string())
            else {
                continue;
            };
            let result: Result<Value, CommandError> = serde_json::from_slice(&delivery.data)
                .unwrap_or_else(|e| Err(CommandError::BadReply(format!("unreadable reply: {e}"))));
            if let Some((_, waiter)) = self.inner.waiting.remove(&correlation) {
                let _ = waiter.send(result);
            }
        }
    }
}

/// What a node does with a request it received.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(
        &self,
        request: NodeRequest,
    ) -> futures_util::future::BoxFuture<'static, Option<Result<Value, CommandError>>>;
}

/// Consumes this node's queue until `shutdown`, answering through `reply_to`.
pub async fn serve(
    amqp: Amqp,
    topology: Topology,
    node_id: String,
    handler: Arc<dyn RequestHandler>,
    shutdown: CancellationToken,
) {
    let queue = node_queue(&topology, &node_id);
    while !shutdown.is_cancelled() {
        if let Err(e) = serve_once(&amqp, &queue, &handler, &shutdown).await {
            tracing::warn!(error = %e, "node queue consumer interrupted; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

async fn serve_once(
    amqp: &Amqp,
    queue: &str,
    handler: &Arc<dyn RequestHandler>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let channel = amqp
        .channel_when_ready(Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-expires"),
        AMQPValue::LongLongInt(NODE_QUEUE_EXPIRES_MS),
    );
    channel
        .queue_declare(queue, QueueDeclareOptions::default(), args)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = channel
        .basic_consume(
            queue,
            "node",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let deliveries = consumer.take_until(shutdown.cancelled());
    deliveries
        .for_each_concurrent(64, |delivery| {
            let (channel, handler) = (channel.clone(), handler.clone());
            async move {
                let Ok(delivery) = delivery else { return };
                let request: Result<NodeRequest, _> = serde_json::from_slice(&delivery.data);
                let reply = match request {
                    Ok(request) => handler.handle(request).await,
                    Err(e) => Some(Err(CommandError::Invalid(format!(
                        "unreadable request: {e}"
                    )))),
                };
                if let (Some(reply), Some(reply_to), Some(correlation)) = (
                    reply,
                    delivery.properties.reply_to().clone(),
                    delivery.properties.correlation_id().clone(),
                ) {
                    let body = serde_json::to_vec(&reply).unwrap_or_default();
                    let _ = channel
                        .basic_publish(
                            "",
                            reply_to.as_str(),
                            BasicPublishOptions::default(),
                            &body,
                            BasicProperties::default().with_correlation_id(correlation),
                        )
                        .await;
                }
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        })
        .await;
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err("the node queue stream ended".into())
    }
}

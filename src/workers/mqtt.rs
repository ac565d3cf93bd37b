//! An MQTT publisher over rumqttc that reports a QoS 1 publish as done only when the broker's
//! PUBACK arrives. The client keeps its session (clean_session = false) and reconnects with
//! backoff, so a broker restart delays notifications instead of losing them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rumqttc::{AsyncClient, ClientError, Event, MqttOptions, Outgoing, Packet, QoS};
use secrecy::ExposeSecret;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::configuration::{mask_url, Settings};

/// How long a publish may wait for its PUBACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest payload the client sends (its default packet limit is 10 KiB, topic included).
const MAX_PAYLOAD: usize = 8 * 1024;

struct Request {
    topic: String,
    payload: Vec<u8>,
    done: oneshot::Sender<()>,
}

/// A cloneable handle; publishes go through the event-loop task.
#[derive(Clone)]
pub struct MqttPublisher {
    requests: mpsc::Sender<Request>,
}

impl MqttPublisher {
    /// Parses `MQTT_URL` (`mqtt://[user:pass@]host[:port]`) and starts the client task.
    pub fn start(settings: &Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let raw = settings.mqtt.url.expose_secret();
        let url = url::Url::parse(raw)
            .map_err(|e| anyhow::anyhow!("invalid MQTT_URL {}: {e}", mask_url(raw)))?;
        let host = url
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("MQTT_URL {} has no host", mask_url(raw)))?;
        let port = url.port().unwrap_or(1883);
        // stable across restarts (the broker keeps the session), unique per deployment and node
        let client_id = format!("{}-notify-{}", settings.events.namespace, settings.node_id);
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(false);
        options.set_inflight(100);
        if !url.username().is_empty() {
            options.set_credentials(url.username(), url.password().unwrap_or_default());
        }
        let (client, eventloop) = AsyncClient::new(options, 256);
        let (requests, rx) = mpsc::channel(256);
        tokio::spawn(drive(client, eventloop, rx, shutdown, mask_url(raw)));
        Ok(Self { requests })
    }

    /// Publishes QoS 1 and waits for the broker's acknowledgement.
    pub async fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        let (done, acked) = oneshot::channel();
        self.requests
            .send(Request {
                topic,
                payload,
                done,
            })
            .await
            .map_err(|_| "the MQTT client has stopped".to_string())?;
        match tokio::time::timeout(ACK_TIMEOUT, acked).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err("the MQTT client stopped before the broker acknowledged".into()),
            Err(_) => Err("the MQTT broker did not acknowledge in time".into()),
        }
    }
}

async fn drive(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    mut requests: mpsc::Receiver<Request>,
    shutdown: CancellationToken,
    url: String,
) {
    // publishes handed to the client, waiting to be given a packet id, in order
    let mut unassigned: VecDeque<oneshot::Sender<()>> = VecDeque::new();
    let mut by_pkid: HashMap<u16, oneshot::Sender<()>> = HashMap::new();
    // a request the client's queue had no room for: handed over once the event loop has taken
    // some. This task is the one that polls the event loop, so it must never wait for room
    // (an awaited `client.publish` with the queue full waits for a poll that only this task
    // makes: every publish after it hung, and with them the consumer's whole prefetch).
    let mut held: Option<Request> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        if let Some(Request {
            topic,
            payload,
            done,
        }) = held.take()
        {
            match client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
                Ok(()) => unassigned.push_back(done),
                // the queue is full (topics and sizes the client refuses were dropped on receipt,
                // and the event loop cannot be gone while this task owns it): the publish comes
                // back and is held while the event loop is polled until it takes some
                Err(ClientError::TryRequest(rumqttc::Request::Publish(publish))) => {
                    held = Some(Request {
                        topic: publish.topic,
                        payload: publish.payload.to_vec(),
                        done,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "MQTT publish not queued"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = client.try_disconnect();
                return;
            }
            request = requests.recv(), if held.is_none() => {
                let Some(request) = request else { return };
                // the client refuses these the way it refuses a full queue: held, they would
                // never be taken and nothing after them either. Dropped, their waiter fails.
                if !rumqttc::valid_topic(&request.topic) || request.payload.len() > MAX_PAYLOAD {
                    tracing::warn!(bytes = request.payload.len(), "MQTT publish refused: a topic with wildcards or an oversized payload");
                    continue;
                }
                held = Some(request);
            }
            event = eventloop.poll() => match event {
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    // a retransmission after a reconnect keeps its packet id and its waiter
                    if let std::collections::hash_map::Entry::Vacant(slot) = by_pkid.entry(pkid) {
                        if let Some(done) = unassigned.pop_front() {
                            slot.insert(done);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(done) = by_pkid.remove(&ack.pkid) {
                        let _ = done.send(());
                    }
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(200);
                    tracing::info!(%url, "connected to the MQTT broker");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%url, error = %e, retry_in_ms = backoff.as_millis() as u64, "MQTT connection lost");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

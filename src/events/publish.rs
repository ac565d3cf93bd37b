//! Publishing with publisher confirms: a message counts as sent only once RabbitMQ confirms it.

use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("RabbitMQ refused the message (nack)")]
    Nacked,
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
}

/// The properties of an event message (events contract).
pub fn event_properties(
    event_id: &str,
    event_type: &str,
    headers: Option<FieldTable>,
) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(event_id))
        .with_type(ShortString::from(event_type))
        .with_delivery_mode(2);
    match headers {
        Some(headers) => properties.with_headers(headers),
        None => properties,
    }
}

/// Publishes and waits for the broker's confirm (the channel must be in confirm mode).
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), PublishError> {
    let confirm = channel
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
    }
}

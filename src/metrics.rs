//! Prometheus metrics, one registry per process (no globals), named `chargegrid_<thing>_<unit>`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric the process exports.
pub struct Metrics {
    registry: Registry,
    pub http_requests_total: IntCounterVec,
    pub http_request_duration_seconds: HistogramVec,
    pub graphql_errors_total: IntCounterVec,
    pub graphql_field_duration_seconds: HistogramVec,
    pub logins_total: IntCounterVec,
    pub chargers_connected: IntGauge,
    pub ocpp_messages_total: IntCounterVec,
    pub ocpp_call_duration_seconds: HistogramVec,
    pub ocpp_handshakes_total: IntCounterVec,
    pub tls_client_certificates_refused_total: IntCounterVec,
    pub outbox_lag_seconds: IntGauge,
    pub outbox_published_total: IntCounterVec,
    pub outbox_relay_cursor: IntGauge,
    pub outbox_relay_gaps: IntGauge,
    /// Statements of the publishing relay: `read` (pending events) and `mark` (confirmed ones).
    pub outbox_relay_statements_total: IntCounterVec,
    /// Rounds of the publishing relay that failed, by `reason`.
    pub outbox_relay_failures_total: IntCounterVec,
    pub sessions_active: IntGauge,
    pub events_consumed_total: IntCounterVec,
    pub notifications_published_total: prometheus::IntCounter,
    pub live_fanout_received_total: prometheus::IntCounter,
    pub store_batch_size: HistogramVec,
    pub charger_auth_checks_total: IntCounterVec,
    pub transaction_messages_stored_total: IntCounterVec,
    pub payment_webhooks_total: IntCounterVec,
    pub site_allocated_amps: prometheus::GaugeVec,
    pub site_measured_amps: prometheus::GaugeVec,
    pub site_reallocation_seconds: HistogramVec,
    pub smart_profiles_total: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ];
        let http_requests_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_http_requests_total",
                "HTTP requests by route and status class",
            ),
            &["route", "status"],
        )?;
        let http_request_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chargegrid_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(latency_buckets.clone()),
            &["route"],
        )?;
        let graphql_errors_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_graphql_errors_total",
                "GraphQL errors by extensions.code",
            ),
            &["code"],
        )?;
        // finer than `latency_buckets` around the API's targets (startSession p99 <= 50 ms)
        let graphql_field_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chargegrid_graphql_field_duration_seconds",
                "Time to execute each POST /graphql operation (validation and resolvers, without reading the body), by its type and first top-level field (other: not a field of the schema)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1,
                0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["type", "field"],
        )?;
        let logins_total = IntCounterVec::new(
            Opts::new("chargegrid_logins_total", "Login attempts by result"),
            &["result"],
        )?;
        let chargers_connected = IntGauge::new(
            "chargegrid_chargers_connected",
            "Chargers holding a WebSocket on this replica",
        )?;
        let ocpp_messages_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_ocpp_messages_total",
                "OCPP messages by direction, action and result",
            ),
            &["direction", "action", "result"],
        )?;
        let ocpp_call_duration_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chargegrid_ocpp_call_duration_seconds",
                "Time to handle a charger call, or for a charger to answer ours",
            )
            .buckets(latency_buckets),
            &["direction", "action"],
        )?;
        let ocpp_handshakes_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_ocpp_handshakes_total",
                "OCPP WebSocket handshakes by result",
            ),
            &["result"],
        )?;
        let tls_client_certificates_refused_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_tls_client_certificates_refused_total",
                "Client certificates refused at the TLS handshake, by reason",
            ),
            &["reason"],
        )?;
        let outbox_lag_seconds = IntGauge::new(
            "chargegrid_outbox_lag_seconds",
            "Age of the oldest unpublished outbox event",
        )?;
        let outbox_relay_cursor = IntGauge::new(
            "chargegrid_outbox_relay_cursor",
            "1 while this process's outbox relay reads after a cursor, 0 while it sweeps or stands by",
        )?;
        let outbox_relay_gaps = IntGauge::new(
            "chargegrid_outbox_relay_gaps",
            "Outbox ids behind the relay's cursor that were missing when it passed them",
        )?;
        let outbox_relay_statements_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_outbox_relay_statements_total",
                "Statements of this process's publishing outbox relay: read (of pending events; the cursor's bookkeeping is not counted), mark (of confirmed ones)",
            ),
            &["statement"],
        )?;
        let outbox_relay_failures_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_outbox_relay_failures_total",
                "Rounds of this process's publishing outbox relay that failed, by reason: nack (RabbitMQ refused an event), broker (no channel to RabbitMQ, or a confirm failed), database (a read or the lock's connection), mark (marking confirmed events); each waits 0.1 s doubling to 10 s before the next",
            ),
            &["reason"],
        )?;
        let outbox_published_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_outbox_published_total",
                "Outbox events published by type",
            ),
            &["event_type"],
        )?;
        let sessions_active = IntGauge::new(
            "chargegrid_sessions_active",
            "Session actors alive on this replica",
        )?;
        let events_consumed_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_events_consumed_total",
                "Consumed events by queue and outcome",
            ),
            &["queue", "outcome"],
        )?;
        let notifications_published_total = prometheus::IntCounter::new(
            "chargegrid_notifications_published_total",
            "Notifications acknowledged by the MQTT broker",
        )?;
        let live_fanout_received_total = prometheus::IntCounter::new(
            "chargegrid_live_fanout_received_total",
            "Events the live fan-out took from its queue (bound only while a subscriber on this replica listens)",
        )?;
        let store_batch_size = HistogramVec::new(
            HistogramOpts::new(
                "chargegrid_store_batch_size",
                "Items per batched statement group (charger writes, handshake and session look-ups)",
            )
            .buckets(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0]),
            &["batch"],
        )?;
        registry.register(Box::new(store_batch_size.clone()))?;
        let charger_auth_checks_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_charger_auth_checks_total",
                "Charger Basic-auth checks by how they were decided (memory, shared, argon2, wrong, missing)",
            ),
            &["decided_by"],
        )?;
        registry.register(Box::new(charger_auth_checks_total.clone()))?;
        let transaction_messages_stored_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_transaction_messages_stored_total",
                "Transaction messages committed by the transaction writer, by kind and by path (set: the batch's set-based statements; job: one by one, the general path)",
            ),
            &["kind", "path"],
        )?;
        registry.register(Box::new(transaction_messages_stored_total.clone()))?;
        let payment_webhooks_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_payment_webhooks_total",
                "Payment provider webhooks by result (applied, duplicate, ignored, mismatch, bad_signature, unreadable)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(payment_webhooks_total.clone()))?;
        let site_allocated_amps = prometheus::GaugeVec::new(
            Opts::new(
                "chargegrid_site_allocated_amps",
                "Current allocated at a site's grid connection, per phase (sessions plus offline chargers' reserve)",
            ),
            &["site", "phase"],
        )?;
        registry.register(Box::new(site_allocated_amps.clone()))?;
        let site_measured_amps = prometheus::GaugeVec::new(
            Opts::new(
                "chargegrid_site_measured_amps",
                "Current the site's sessions draw, per phase, from their meter values",
            ),
            &["site", "phase"],
        )?;
        registry.register(Box::new(site_measured_amps.clone()))?;
        let site_reallocation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "chargegrid_site_reallocation_seconds",
                "Load management: the allocation itself (compute) and a whole round with its pushes (round)",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ]),
            &["stage"],
        )?;
        registry.register(Box::new(site_reallocation_seconds.clone()))?;
        let smart_profiles_total = IntCounterVec::new(
            Opts::new(
                "chargegrid_smart_profiles_total",
                "Charging profiles load management pushed or verified, by kind and result",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(smart_profiles_total.clone()))?;
        registry.register(Box::new(events_consumed_total.clone()))?;
        registry.register(Box::new(notifications_published_total.clone()))?;
        registry.register(Box::new(live_fanout_received_total.clone()))?;
        registry.register(Box::new(http_requests_total.clone()))?;
        registry.register(Box::new(http_request_duration_seconds.clone()))?;
        registry.register(Box::new(graphql_errors_total.clone()))?;
        registry.register(Box::new(graphql_field_duration_seconds.clone()))?;
        registry.register(Box::new(logins_total.clone()))?;
        registry.register(Box::new(chargers_connected.clone()))?;
        registry.register(Box::new(ocpp_messages_total.clone()))?;
        registry.register(Box::new(ocpp_call_duration_seconds.clone()))?;
        registry.register(Box::new(ocpp_handshakes_total.clone()))?;
        registry.register(Box::new(tls_client_certificates_refused_total.clone()))?;
        registry.register(Box::new(outbox_lag_seconds.clone()))?;
        registry.register(Box::new(outbox_published_total.clone()))?;
        registry.register(Box::new(outbox_relay_cursor.clone()))?;
        registry.register(Box::new(outbox_relay_gaps.clone()))?;
        registry.register(Box::new(outbox_relay_statements_total.clone()))?;
        registry.register(Box::new(outbox_relay_failures_total.clone()))?;
        registry.register(Box::new(sessions_active.clone()))?;
        Ok(Self {
            registry,
            http_requests_total,
            http_request_duration_seconds,
            graphql_errors_total,
            graphql_field_duration_seconds,
            logins_total,
            chargers_connected,
            ocpp_messages_total,
            ocpp_call_duration_seconds,
            ocpp_handshakes_total,
            tls_client_certificates_refused_total,
            outbox_lag_seconds,
            outbox_published_total,
            outbox_relay_cursor,
            outbox_relay_gaps,
            outbox_relay_statements_total,
            outbox_relay_failures_total,
            sessions_active,
            events_consumed_total,
            notifications_published_total,
            live_fanout_received_total,
            store_batch_size,
            charger_auth_checks_total,
            transaction_messages_stored_total,
            payment_webhooks_total,
            site_allocated_amps,
            site_measured_amps,
            site_reallocation_seconds,
            smart_profiles_total,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        if encoder
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

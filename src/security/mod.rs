//! Chargers proving who they are: the TLS listener (security profiles 2 and 3), the CSMS CA
//! that signs their certificates, and the security events both sides record.

pub mod ca;
pub mod certificates;
pub mod contract;
pub mod pnc;
pub mod renewals;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::configuration::Settings;
use crate::store::security::{self as store, NewSecurityEvent};
use ca::CsmsCa;
use tls::{ChargerTls, TlsPaths};

/// How often every replica re-reads the revoked serials (a revocation on this replica applies
/// at once; on the others within this time).
const REVOCATION_REFRESH: Duration = Duration::from_secs(5);

/// Why security could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    #[error("CSMS CA: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

/// The TLS listener's material and the CSMS CA, shared by the handshake, the OCPP handlers and
/// the API.
pub struct Security {
    /// Present when `OCPP_TLS_BIND` is set.
    pub tls: Option<ChargerTls>,
    /// The CA that signs chargers' certificates: configured, or generated in `--dev`.
    pub ca: Option<Arc<CsmsCa>>,
    /// The CA that signs stations' ISO 15118 (V2G) certificates, when configured; never
    /// trusted for chargers' TLS client certificates.
    pub v2g_ca: Option<Arc<CsmsCa>>,
    /// Plug & Charge: the contract-certificate provider and OCSP responders.
    pub pnc: pnc::PlugAndCharge,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("ca", &self.ca.is_some())
            .field("v2g_ca", &self.v2g_ca.is_some())
            .finish()
    }
}

fn read_file(path: &str) -> Result<String, SecurityError> {
    std::fs::read_to_string(path).map_err(|e| SecurityError::File {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

impl Security {
    /// Loads the TLS material and the CA, and the revoked serials.
    pub async fn load(
        settings: &Settings,
        db: &PgPool,
        refused: Option<prometheus::IntCounterVec>,
    ) -> Result<Self, SecurityError> {
        let ocpp = &settings.ocpp;
        let ca = match (&ocpp.ca_cert, &ocpp.ca_key) {
            (Some(cert), Some(key)) => Some(Arc::new(CsmsCa::from_pem(
                &read_file(cert)?,
                &read_file(key)?,
            )?)),
            _ if settings.dev => {
                let stored =
                    store::dev_ca(db, || match CsmsCa::generate("chargegrid development") {
                        Ok(pair) => Some(pair),
                        Err(e) => {
                            tracing::error!(error = %e, "could not generate a development CSMS CA");
                            None
                        }
                    })
                    .await?;
                match stored {
                    Some((cert, key)) => {
                        tracing::warn!(
                            "using the generated development CSMS CA (kept in Postgres); \
                             configure OCPP_CA_CERT and OCPP_CA_KEY for production"
                        );
                        Some(Arc::new(CsmsCa::from_pem(&cert, &key)?))
                    }
                    None => None,
                }
            }
            _ => None,
        };
        let tls = match (&ocpp.tls_bind, &ocpp.tls_cert, &ocpp.tls_key) {
            (Some(_), Some(cert), Some(key)) => {
                let tls = ChargerTls::load(
                    TlsPaths {
                        cert: cert.into(),
                        key: key.into(),
                        client_ca: ocpp.client_ca.as_ref().map(Into::into),
                    },
                    refused,
                )?;
                if let Some(ca) = &ca {
                    tls.trust_issuers(vec![ca.certificate_der()])?;
                }
                Some(tls)
            }
            _ => None,
        };
        let v2g_ca = match (&ocpp.v2g_ca_cert, &ocpp.v2g_ca_key) {
            (Some(cert), Some(key)) => Some(Arc::new(CsmsCa::from_pem(
                &read_file(cert)?,
                &read_file(key)?,
            )?)),
            _ => None,
        };
        let security = Self {
            tls,
            ca,
            v2g_ca,
            pnc: pnc::PlugAndCharge::from_settings(settings)?,
        };
        security.refresh_revoked(db).await?;
        Ok(security)
    }

    /// Re-reads the revoked certificate serials into the TLS verifier.
    pub async fn refresh_revoked(&self, db: &PgPool) -> Result<(), SecurityError> {
        if let Some(tls) = &self.tls {
            let serials = store::revoked_serials(db).await?;
            tls.set_revoked(serials.into_iter().collect());
        }
        Ok(())
    }

    /// The certificate reloader and the revocation refresher, until `stop`.
    pub fn spawn_tasks(
        self: &Arc<Self>,
        db: PgPool,
        reload_every: Duration,
        stop: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(tls) = &self.tls else {
            return Vec::new();
        };
        let reloader = tls.spawn_reloader(reload_every, stop.clone());
        // refused client certificates become security events
        let (sender, mut refusals) = tokio::sync::mpsc::channel::<tls::Refusal>(1024);
        tls.report_refusals(sender);
        let events_db = db.clone();
        let events_stop = stop.clone();
        let recorder = tokio::spawn(async move {
            loop {
                let refusal = tokio::select! {
                    _ = events_stop.cancelled() => return,
                    next = refusals.recv() => match next {
                        Some(refusal) => refusal,
                        None => return,
                    },
                };
                // attributed only to a well-formed charger id (the CN is the client's word)
                let claimed = refusal
                    .common_name
                    .as_deref()
                    .and_then(|cn| crate::domain::ChargePointId::parse(cn).ok());
                record_server_event(
                    &events_db,
                    claimed.as_ref().map(|id| id.as_str()),
                    "InvalidChargingStationCertificate",
                    format!(
                        "client certificate refused at the TLS handshake ({}): {}; serial {}",
                        refusal.reason,
                        refusal.detail,
                        refusal.serial.as_deref().unwrap_or("unknown")
                    ),
                    false,
                )
                .await;
            }
        });
        let security = self.clone();
        let revocations = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_REFRESH);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(e) = security.refresh_revoked(&db).await {
                    tracing::warn!(error = %e, "could not refresh revoked certificates");
                }
            }
        });
        vec![reloader, revocations, recorder]
    }
}

/// Security events that are critical (OCPP 2.0.1 appendix 1, the 1.6 whitepaper's list, and
/// the server's own): published as `SECURITY_EVENT` besides being stored.
pub const CRITICAL: &[&str] = &[
    "FirmwareUpdated",
    "SettingSystemTime",
    "StartupOfTheDevice",
    "ResetOrReboot",
    "SecurityLogWasCleared",
    "MemoryExhaustion",
    "TamperDetectionActivated",
    "MaintenanceLoginAccepted",
    "MaintenanceLoginFailed",
    "InvalidFirmwareSignature",
    "InvalidFirmwareSigningCertificate",
    "InvalidCsmsCertificate",
    "InvalidCentralSystemCertificate",
    "InvalidChargingStationCertificate",
    "InvalidChargePointCertificate",
    "InvalidTLSVersion",
    "InvalidTLSCipherSuite",
    // the server's own
    "CertificateOfAnotherCharger",
];

/// Stores a security event and, when critical, its `SECURITY_EVENT` in the same transaction.
pub async fn record(
    db: &PgPool,
    source_name: &str,
    event: &NewSecurityEvent,
) -> Result<(), crate::store::StoreError> {
    let mut tx = db.begin().await?;
    store::record_event(&mut *tx, event).await?;
    if event.critical {
        crate::events::outbox::enqueue(
            &mut tx,
            crate::events::envelope::Event::SecurityEvent {
                charger_id: event.charger_id.clone(),
                security_event_type: event.event_type.clone(),
                tech_info: event.tech_info.clone(),
                origin: event.source.to_string(),
            },
            event.occurred_at,
            source_name,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Records a security event the server itself observed (refused handshakes, profile
/// violations, certificates signed or refused). Never fails the caller: a lost record is
/// logged.
pub async fn record_server_event(
    db: &PgPool,
    charger_id: Option<&str>,
    event_type: &str,
    tech_info: impl Into<String>,
    critical: bool,
) {
    let event = NewSecurityEvent {
        charger_id: charger_id.map(str::to_string),
        source: "server",
        event_type: event_type.to_string(),
        tech_info: Some(tech_info.into()).filter(|t: &String| !t.is_empty()),
        critical: critical || CRITICAL.contains(&event_type),
        occurred_at: Utc::now(),
    };
    if let Err(e) = record(db, "chargegrid-serve", &event).await {
        tracing::warn!(error = %e, event_type, "could not record a security event");
    }
}

/// Stores a SecurityEventNotification from a charger (either protocol version).
pub async fn record_charger_event(
    app: &crate::context::AppContext,
    charger_id: &str,
    event_type: &str,
    occurred_at: chrono::DateTime<Utc>,
    tech_info: Option<String>,
) -> Result<(), crate::store::StoreError> {
    let event = NewSecurityEvent {
        charger_id: Some(charger_id.to_string()),
        source: "charger",
        event_type: event_type.to_string(),
        tech_info,
        critical: CRITICAL.contains(&event_type),
        occurred_at,
    };
    if event.critical {
        tracing::warn!(%charger_id, event_type, "critical security event from a charger");
    }
    record(
        &app.db,
        &format!("chargegrid-serve/{}", app.settings.node_id),
        &event,
    )
    .await
}

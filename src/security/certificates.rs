//! SignCertificate, whichever protocol version it came in: the CSR is checked and signed by
//! the CSMS CA, the certificate recorded, and the chain to send back in CertificateSigned
//! returned. Every decision is recorded as a security event.

use super::ca::Purpose;
use crate::context::AppContext;
use crate::store::security::{self as store, NewCertificate};

/// The PEM chain for CertificateSigned (the charger's certificate, then the CSMS CA's), or why
/// the request is rejected.
pub async fn sign_request(
    app: &AppContext,
    charger_id: &str,
    csr: &str,
    certificate_type: &str,
) -> Result<String, String> {
    let outcome = sign(app, charger_id, csr, certificate_type).await;
    match &outcome {
        Ok((serial, _)) => {
            tracing::info!(%charger_id, %serial, certificate_type, "charger certificate signed");
            super::record_server_event(
                &app.db,
                Some(charger_id),
                "CertificateIssued",
                format!("{certificate_type} serial {serial}"),
                false,
            )
            .await;
        }
        Err(reason) => {
            tracing::warn!(%charger_id, %reason, certificate_type, "certificate signing request rejected");
            super::record_server_event(
                &app.db,
                Some(charger_id),
                "CertificateRequestRejected",
                reason.clone(),
                false,
            )
            .await;
        }
    }
    outcome.map(|(_, chain)| chain)
}

struct Serial(String);

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

async fn sign(
    app: &AppContext,
    charger_id: &str,
    csr: &str,
    certificate_type: &str,
) -> Result<(Serial, String), String> {
    if csr.len() > 5500 {
        return Err("the CSR is longer than OCPP's 5500 characters".into());
    }
    let (ca, purpose) = match certificate_type {
        "ChargingStationCertificate" => (
            app.security
                .ca
                .clone()
                .ok_or("no CSMS certificate authority is configured")?,
            Purpose::ChargingStation,
        ),
        "V2GCertificate" => (
            app.security
                .v2g_ca
                .clone()
                .ok_or("no V2G certificate authority is configured (OCPP_V2G_CA_CERT)")?,
            Purpose::V2g,
        ),
        other => return Err(format!("{other} requests are not signed here")),
    };
    let validity = app.settings.ocpp.certificate_validity_days;
    let (csr, id) = (csr.to_string(), charger_id.to_string());
    let signer = ca.clone();
    let issued = tokio::task::spawn_blocking(move || signer.sign_for(&csr, &id, validity, purpose))
        .await
        .map_err(|e| format!("signing failed: {e}"))?
        .map_err(|e| e.to_string())?;
    store::insert_certificate(
        &app.db,
        NewCertificate {
            serial: &issued.serial,
            charger_id,
            certificate_type,
            subject: &issued.subject,
            pem: &issued.pem,
            not_before: issued.not_before,
            not_after: issued.not_after,
        },
    )
    .await
    .map_err(|e| format!("the certificate could not be recorded: {e}"))?;
    let chain = format!("{}{}", issued.pem, ca.certificate_pem());
    Ok((Serial(issued.serial), chain))
}

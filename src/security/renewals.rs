//! Certificates are renewed before they expire: every hour each replica asks the chargers it
//! holds whose newest certificate expires within `ocpp.certificate_renew_before_days` to send a
//! new SignCertificate (2.0.1 TriggerMessage SignChargingStationCertificate, 1.6
//! ExtendedTriggerMessage SignChargePointCertificate).

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::actors::registry;
use crate::context::AppContext;
use crate::ocpp::command::ChargerCommand;

const EVERY: Duration = Duration::from_secs(3600);

/// The renewal loop, until `stop`.
pub async fn run(app: AppContext, stop: CancellationToken) {
    if app.security.ca.is_none() {
        return; // nothing is signed here, so nothing to renew
    }
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = renew_due(&app).await {
            tracing::warn!(error = %e, "certificate renewal check failed; retried in an hour");
        }
    }
}

/// Asks every charger of this replica whose certificate is due for renewal for a new CSR;
/// returns how many were asked.
pub async fn renew_due(app: &AppContext) -> Result<usize, crate::store::StoreError> {
    let before = Utc::now()
        + chrono::Duration::days(i64::from(app.settings.ocpp.certificate_renew_before_days));
    let due = crate::store::security::expiring_here(&app.db, &app.settings.node_id, before).await?;
    let mut asked = 0;
    for (charger_id, protocol) in due {
        let command = if protocol.as_deref() == Some("OCPP16") {
            ChargerCommand::Raw {
                action: "ExtendedTriggerMessage".into(),
                payload: json!({ "requestedMessage": "SignChargePointCertificate" }),
            }
        } else {
            ChargerCommand::Raw {
                action: "TriggerMessage".into(),
                payload: json!({ "requestedMessage": "SignChargingStationCertificate" }),
            }
        };
        match registry::execute(app, &charger_id, command).await {
            Ok(answer) => {
                asked += 1;
                tracing::info!(%charger_id, %answer, "asked the charger to renew its certificate");
            }
            Err(e) => {
                tracing::warn!(%charger_id, error = %e, "could not ask for a certificate renewal")
            }
        }
    }
    Ok(asked)
}

//! What a charger's FirmwareStatusNotification (1.6, its security extension's
//! SignedFirmwareStatusNotification, 2.0.1) means for the firmware campaign it is in: progress,
//! success (Installed) or a failed attempt. The notification itself is kept as a report too.

use crate::context::AppContext;
use crate::store::firmware::{self, Progress};

pub async fn progress(app: &AppContext, charger_id: &str, status: &str, request_id: Option<i32>) {
    let found = match firmware::sent_for(&app.db, charger_id, request_id).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(%charger_id, error = %e, "firmware campaign look-up failed");
            return;
        }
    };
    let Some(entry) = found else {
        return;
    };
    let retry = i64::try_from(app.settings.firmware.retry_secs).unwrap_or(i64::MAX);
    let result = match Progress::of(status) {
        Progress::Going => {
            firmware::progressed(&app.db, entry.campaign_id, charger_id, status, false).await
        }
        Progress::Done => {
            tracing::info!(campaign_id = %entry.campaign_id, %charger_id, "firmware installed");
            firmware::progressed(&app.db, entry.campaign_id, charger_id, status, true).await
        }
        Progress::Failed => {
            tracing::warn!(campaign_id = %entry.campaign_id, %charger_id, %status, "firmware update failed");
            firmware::attempt_failed(
                &app.db,
                entry.campaign_id,
                charger_id,
                status,
                &format!("the charger reported {status}"),
                retry,
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::error!(%charger_id, error = %e, "firmware progress not recorded");
    }
}

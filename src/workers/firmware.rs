//! Runs firmware campaigns, on every serving replica: each tick hands the next chargers of
//! every running campaign their firmware (as many as its concurrency leaves room for, online
//! ones only), fails attempts of chargers that stayed silent, and ends campaigns with nobody
//! left to go. What chargers report (FirmwareStatusNotification) moves them on as it arrives
//! (`ocpp::firmware`).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::actors::registry;
use crate::context::AppContext;
use crate::ocpp::command::{ChargerCommand, CommandError};
use crate::store::firmware::{self, CampaignChargerRecord, CampaignRecord};

pub async fn run(ctx: AppContext, shutdown: CancellationToken) {
    let settings = ctx.settings.firmware.clone();
    let mut every = tokio::time::interval(Duration::from_millis(settings.tick_ms.max(100)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stale = i64::try_from(settings.stale_secs).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        if let Err(e) = tick(&ctx, stale).await {
            tracing::warn!(error = %e, "firmware campaign tick failed; tried again at the next");
        }
    }
}

async fn tick(ctx: &AppContext, stale_secs: i64) -> Result<(), crate::store::StoreError> {
    let retry = i64::try_from(ctx.settings.firmware.retry_secs).unwrap_or(i64::MAX);
    for (campaign_id, charger_id) in firmware::stale(&ctx.db, stale_secs).await? {
        tracing::warn!(%campaign_id, %charger_id, "firmware update silent: attempt failed");
        firmware::attempt_failed(
            &ctx.db,
            campaign_id,
            &charger_id,
            "Silent",
            "the charger reported no progress in time",
            retry,
        )
        .await?;
    }
    for campaign in firmware::running(&ctx.db).await? {
        for claimed in firmware::claim(&ctx.db, campaign.id).await? {
            tokio::spawn(send(ctx.clone(), campaign.clone(), claimed));
        }
    }
    for id in firmware::finish_done(&ctx.db).await? {
        tracing::info!(campaign_id = %id, "firmware campaign ended");
    }
    Ok(())
}

/// Sends one charger its firmware and records how that went.
async fn send(ctx: AppContext, campaign: CampaignRecord, charger: CampaignChargerRecord) {
    let command = ChargerCommand::UpdateFirmware {
        request_id: charger.request_id,
        location: campaign.location.clone(),
        retrieve_at: campaign.retrieve_at.unwrap_or_else(chrono::Utc::now),
        signature: campaign.signature.clone(),
        signing_certificate: campaign.signing_certificate.clone(),
    };
    let retry = i64::try_from(ctx.settings.firmware.retry_secs).unwrap_or(i64::MAX);
    let (campaign_id, charger_id) = (campaign.id, charger.charger_id.as_str());
    let outcome = match registry::execute(&ctx, charger_id, command).await {
        // 1.6 UpdateFirmware answers nothing; the others Accepted (or AcceptedCanceled: it
        // replaced an update in progress)
        Ok(reply) => match reply.get("status").and_then(Value::as_str) {
            None | Some("Accepted" | "AcceptedCanceled") => {
                tracing::info!(%campaign_id, %charger_id, attempt = charger.attempts, "firmware update sent");
                firmware::progressed(&ctx.db, campaign_id, charger_id, "Accepted", false).await
            }
            Some(refused) => {
                tracing::warn!(%campaign_id, %charger_id, %refused, "firmware update refused");
                firmware::attempt_failed(
                    &ctx.db,
                    campaign_id,
                    charger_id,
                    refused,
                    &format!("the charger answered {reply}"),
                    retry,
                )
                .await
            }
        },
        Err(CommandError::Offline) => firmware::unclaim(&ctx.db, campaign_id, charger_id).await,
        Err(e) => {
            firmware::attempt_failed(
                &ctx.db,
                campaign_id,
                charger_id,
                "NotSent",
                &e.to_string(),
                retry,
            )
            .await
        }
    };
    if let Err(e) = outcome {
        tracing::error!(%campaign_id, %charger_id, error = %e, "firmware campaign state not recorded");
    }
}

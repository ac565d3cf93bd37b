//! What a running session costs so far, for the charger's display (OCPP 2.0.1 I02/I03:
//! `totalCost` in TransactionEvent answers). The tariff is chosen exactly as billing chooses it
//! and kept per station (and each driver's plan per driver) for five minutes, so the durable
//! path rarely asks Postgres; a tariff change shows on displays within those minutes. The
//! final cost (a transaction's end) reads both afresh, as the invoice does.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::billing::{self, BillingPolicy};
use super::sessions::SessionRecord;
use super::StoreError;
use crate::domain::tariff::Tariff;

/// How long a station's tariff and a driver's plan are kept.
const KEEP: Duration = Duration::from_secs(300);

/// Users' plans kept at most; beyond it the map starts again (a plan is one short read).
const MAX_USERS: usize = 100_000;

#[derive(Default)]
pub struct TariffCache {
    by_station: DashMap<Uuid, (Tariff, Instant)>,
    /// Whether a user's plan covers charging (FLAT_RATE): their invoices are 0.
    covered: DashMap<Uuid, (bool, Instant)>,
}

impl TariffCache {
    /// The tariff of `station_id`, from memory when it is fresh.
    pub async fn tariff(
        &self,
        pool: &PgPool,
        station_id: Uuid,
        currency: &str,
        fresh: bool,
    ) -> Result<Tariff, StoreError> {
        if let Some(entry) = self.by_station.get(&station_id).filter(|_| !fresh) {
            if entry.1.elapsed() < KEEP {
                return Ok(entry.0.clone());
            }
        }
        let fallback = Tariff::fallback(currency);
        let policy = BillingPolicy {
            currency,
            payment_due_days: 0,
            fallback: &fallback,
            source: "running-cost",
        };
        let tariff = billing::station_tariff(pool, station_id, &policy).await?;
        self.by_station
            .insert(station_id, (tariff.clone(), Instant::now()));
        Ok(tariff)
    }

    /// Whether `user_id`'s plan covers charging, from memory when it is fresh.
    async fn covered(&self, pool: &PgPool, user_id: Uuid, fresh: bool) -> Result<bool, StoreError> {
        if let Some(entry) = self.covered.get(&user_id).filter(|_| !fresh) {
            if entry.1.elapsed() < KEEP {
                return Ok(entry.0);
            }
        }
        let plan: Option<String> = sqlx::query_scalar("SELECT plan FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
        let covered = plan.as_deref() == Some("FLAT_RATE");
        if self.covered.len() >= MAX_USERS {
            self.covered.clear();
        }
        self.covered.insert(user_id, (covered, Instant::now()));
        Ok(covered)
    }

    /// What `session` costs its driver at `now` (the charger's time of the event; its end
    /// once it ended), as its invoice will say; `fresh` reads tariff and plan anew.
    pub async fn cost_of(
        &self,
        pool: &PgPool,
        session: &SessionRecord,
        currency: &str,
        now: DateTime<Utc>,
        fresh: bool,
    ) -> Result<Decimal, StoreError> {
        let (tariff, covered) = tokio::try_join!(
            self.tariff(pool, session.station_id, currency, fresh),
            self.covered(pool, session.user_id, fresh)
        )?;
        Ok(if covered {
            Decimal::ZERO
        } else {
            cost_at(&tariff, session, now)
        })
    }
}

/// The session's charge under `tariff`, its duration counted to its end or to `now` in
/// started minutes (as billing counts them).
pub fn cost_at(tariff: &Tariff, session: &SessionRecord, now: DateTime<Utc>) -> Decimal {
    let minutes = match session.start_time {
        Some(start) => {
            ((session.end_time.unwrap_or(now) - start)
                .num_seconds()
                .max(0)
                + 59)
                / 60
        }
        None => 0,
    };
    tariff.charge(session.energy_kwh, minutes).total
}

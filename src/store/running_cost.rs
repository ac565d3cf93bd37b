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
    /// The tariff of `station_id` and whether `user_id`'s plan covers charging (FLAT_RATE:
    /// their invoices are 0): from memory when both are kept and fresh, else both in one read.
    async fn tariff_and_cover(
        &self,
        pool: &PgPool,
        station_id: Uuid,
        user_id: Uuid,
        currency: &str,
        fresh: bool,
    ) -> Result<(Tariff, bool), StoreError> {
        let kept = |at: &Instant| !fresh && at.elapsed() < KEEP;
        let tariff = self
            .by_station
            .get(&station_id)
            .filter(|e| kept(&e.1))
            .map(|e| e.0.clone());
        let covered = self
            .covered
            .get(&user_id)
            .filter(|e| kept(&e.1))
            .map(|e| e.0);
        if let (Some(tariff), Some(covered)) = (&tariff, covered) {
            return Ok((tariff.clone(), covered));
        }
        let fallback = Tariff::fallback(currency);
        let policy = BillingPolicy {
            currency,
            payment_due_days: 0,
            fallback: &fallback,
            source: "running-cost",
        };
        let (tariff, plan) =
            billing::station_tariff_and_plan(pool, station_id, user_id, &policy).await?;
        let covered = plan.as_deref() == Some("FLAT_RATE");
        let now = Instant::now();
        self.by_station.insert(station_id, (tariff.clone(), now));
        if self.covered.len() >= MAX_USERS {
            self.covered.clear();
        }
        self.covered.insert(user_id, (covered, now));
        Ok((tariff, covered))
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
        let (tariff, covered) = self
            .tariff_and_cover(pool, session.station_id, session.user_id, currency, fresh)
            .await?;
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

//! One re-allocation round of a site: read, allocate, push, verify, publish.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use futures_util::stream::{self, StreamExt};
use serde_json::json;
use uuid::Uuid;

use super::input::{self, SiteView};
use crate::actors::registry;
use crate::context::AppContext;
use crate::live::LiveEvent;
use crate::ocpp::command::{ChargerCommand, LimitScope};
use crate::store::sites::{self, ActiveSession, SiteChargerRecord};

/// Pushes to different chargers in flight at once.
const PUSH_CONCURRENCY: usize = 64;
/// A car drawing this much less than its allocation, two rounds running, is bounded by its draw.
const UNDERDRAW_AMPS: f64 = 2.0;

/// What a controller remembers between rounds.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// Per session: the draw it is bounded by (when the car takes less than it is given) and
    /// how many rounds in a row it drew less.
    pub demand: HashMap<Uuid, (Option<f64>, u8)>,
    /// Per session: measured ampere per phase at the last round.
    pub measured: HashMap<Uuid, f64>,
    /// Chargers whose last push failed: counted like offline chargers until they answer.
    pub unreachable: HashSet<String>,
}

impl Memory {
    /// Whether a new power reading changes what the allocator would be told about the car.
    pub fn draw_changed(&self, id: &Uuid, power_kw: Option<f64>) -> bool {
        let Some(kw) = power_kw else { return false };
        match (self.measured.get(id), self.demand.get(id)) {
            (Some(before), _) if before.abs() < f64::EPSILON => kw > 0.0,
            // a rough test in kW: the round converts to ampere with the site's voltage
            (Some(before), Some((Some(bound), _))) => {
                let ratio = kw / before.max(0.1);
                !(0.8..=1.2).contains(&ratio) || *bound <= 0.0
            }
            (Some(before), _) => kw / before.max(0.1) < 0.8,
            (None, _) => true,
        }
    }
}

pub struct Finished {
    pub memory: Memory,
    /// The sessions allocated, with status and cap, for judging later changes.
    pub sessions: HashMap<Uuid, (String, Option<f64>)>,
    /// Something did not reach its charger: another round soon.
    pub retry: bool,
}

pub enum Outcome {
    Done(Box<Finished>),
    /// The site no longer exists.
    Gone,
}

/// Runs one round for `site_id`.
pub async fn run(app: &AppContext, site_id: Uuid, mut memory: Memory) -> Result<Outcome, String> {
    let settings = &app.settings.smart_charging;
    let Some(site) = sites::find(&app.db, site_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Outcome::Gone);
    };
    let circuits = sites::circuits(&app.db, site_id)
        .await
        .map_err(|e| e.to_string())?;
    let chargers = sites::chargers(&app.db, site_id)
        .await
        .map_err(|e| e.to_string())?;
    let active = sites::active_sessions(&app.db, site_id)
        .await
        .map_err(|e| e.to_string())?;

    // what the cars drew since the last round decides their demand bound
    let view = SiteView::new(&site, &circuits, &chargers, &active, settings, Utc::now());
    update_demand(&mut memory, &view, &active);
    let site_input = view.input(&memory);

    let computed = Instant::now();
    let result = crate::domain::allocation::allocate(&site_input);
    app.metrics
        .site_reallocation_seconds
        .with_label_values(&["compute"])
        .observe(computed.elapsed().as_secs_f64());

    let mut retry = false;
    // a charger that (re)booted or never confirmed its fallback gets it before anything else
    let fallback_due: Vec<&SiteChargerRecord> = chargers
        .iter()
        .filter(|c| c.online && !memory.unreachable.contains(&c.charger_id))
        .filter(|c| match (c.fallback_installed_at, c.last_boot_at) {
            (None, _) => true,
            (Some(installed), Some(boot)) => installed < boot,
            (Some(_), None) => false,
        })
        .collect();
    let installs = stream::iter(
        fallback_due
            .into_iter()
            .map(|c| install_fallback(app, c, &view)),
    )
    .buffer_unordered(PUSH_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    for (charger_id, ok) in installs {
        if !ok {
            retry = true;
        }
        let _ = sites::set_fallback_installed(&app.db, &charger_id, ok).await;
    }

    // the pushes: what changed, decreases before increases
    let mut decreases = Vec::new();
    let mut increases = Vec::new();
    let mut rows = Vec::new();
    for allocation in &result.sessions {
        let Some(session) = view.session(&allocation.key) else {
            continue;
        };
        let changed = match (session.allocated_amps, session.applied) {
            // every decrease is pushed (the others' shares count on it); an increase only when
            // it is worth a profile
            (Some(before), Some(true)) => {
                allocation.amps < before - 1e-9
                    || allocation.amps - before >= settings.min_change_amps
                    || (before == 0.0 && allocation.amps > 0.0)
            }
            _ => true,
        };
        if !changed {
            continue;
        }
        let phases = allocation.grid_phases.len() as i16;
        rows.push((
            session.id,
            session.charger_id.clone(),
            allocation.amps,
            phases,
        ));
        let push = (session, allocation.amps, phases as u8);
        match session.allocated_amps {
            Some(before) if allocation.amps > before => increases.push(push),
            None => increases.push(push),
            _ => decreases.push(push),
        }
    }
    sites::record_allocations(&app.db, site_id, &rows)
        .await
        .map_err(|e| e.to_string())?;
    let lowered = push_all(app, &decreases, &mut memory).await;
    if lowered {
        push_all(app, &increases, &mut memory).await;
    } else if !increases.is_empty() {
        // a charger did not take its lower limit: raising others now could pass the limit
        tracing::warn!(site_id = %site_id, "a lower limit was not applied; increases wait for the next round");
    }
    retry |= !lowered
        || decreases
            .iter()
            .chain(&increases)
            .any(|(s, _, _)| memory.unreachable.contains(&s.charger_id));

    // the site's load, for GraphQL and the metrics
    let load = view.load(&result, &memory);
    let _ = sites::save_load(&app.db, site_id, &load).await;
    publish_metrics(app, site_id, &load);
    app.live.publish(LiveEvent::Site(site_id));

    // the read-back runs beside the next rounds: a charger slow to answer it must not hold
    // the site's allocation back
    if settings.verify_schedules {
        let checks: Vec<Check> = decreases
            .iter()
            .chain(&increases)
            .map(|(session, amps, _)| Check {
                session_id: session.id,
                charger_id: session.charger_id.clone(),
                connector_id: session.connector_id.unwrap_or(1),
                amps: *amps,
                v201: view.is_v201(&session.charger_id),
                amps_per_watt: view.watts_to_amps(&session.charger_id, 1.0),
            })
            .collect();
        if !checks.is_empty() {
            let app = app.clone();
            tokio::spawn(async move { verify(&app, checks).await });
        }
    }

    let sessions = active
        .iter()
        .map(|s| (s.id, (s.status.clone(), s.max_power_kw)))
        .collect();
    // forget sessions that ended
    let open: HashSet<Uuid> = active.iter().map(|s| s.id).collect();
    memory.demand.retain(|id, _| open.contains(id));
    memory.measured.retain(|id, _| open.contains(id));
    Ok(Outcome::Done(Box::new(Finished {
        memory,
        sessions,
        retry,
    })))
}

/// Bounds a car by its draw after two rounds of drawing clearly less than it was given, and
/// lifts the bound once it draws up to it.
fn update_demand(memory: &mut Memory, view: &SiteView, active: &[ActiveSession]) {
    for session in active {
        let Some(measured) = view.measured_amps(session) else {
            continue;
        };
        memory
            .measured
            .insert(session.id, session.power_kw.unwrap_or_default());
        let entry = memory.demand.entry(session.id).or_insert((None, 0));
        let given = match (session.allocated_amps, session.applied) {
            (Some(amps), Some(true)) if amps > 0.0 => amps,
            _ => {
                entry.1 = 0;
                continue;
            }
        };
        match entry.0 {
            Some(bound)
                if measured + 0.5 >= bound + crate::domain::allocation::DEMAND_HEADROOM_AMPS =>
            {
                // the car takes all it is allowed: it may want more
                *entry = (None, 0);
            }
            Some(_) => {
                entry.0 = Some(measured);
            }
            None if measured + UNDERDRAW_AMPS < given => {
                entry.1 = entry.1.saturating_add(1);
                if entry.1 >= 2 {
                    entry.0 = Some(measured);
                }
            }
            None => entry.1 = 0,
        }
    }
}

/// Pushes session limits; `false` when one was not applied.
async fn push_all(
    app: &AppContext,
    pushes: &[(&ActiveSession, f64, u8)],
    memory: &mut Memory,
) -> bool {
    let results = stream::iter(pushes.iter().map(|(session, amps, phases)| async move {
        let command = ChargerCommand::LimitCurrent {
            scope: LimitScope::Transaction,
            connector_id: session.connector_id.unwrap_or(1),
            transaction_id: session.transaction_id,
            transaction_ref: session.transaction_ref.clone(),
            amps: *amps,
            phases: *phases,
        };
        let result = registry::execute(app, &session.charger_id, command).await;
        let accepted = matches!(&result, Ok(reply) if reply.get("status").and_then(|s| s.as_str()) == Some("Accepted"));
        if let Err(e) = &result {
            tracing::warn!(charger_id = %session.charger_id, session_id = %session.id, error = %e, "allocation not pushed");
        }
        let _ = sites::mark_applied(&app.db, session.id, *amps, accepted).await;
        app.metrics
            .smart_profiles_total
            .with_label_values(&["transaction", if accepted { "accepted" } else { "failed" }])
            .inc();
        (session.charger_id.clone(), accepted)
    }))
    .buffer_unordered(PUSH_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
    let mut all = true;
    for (charger_id, accepted) in results {
        if accepted {
            memory.unreachable.remove(&charger_id);
        } else {
            memory.unreachable.insert(charger_id);
            all = false;
        }
    }
    all
}

/// The charger's maximum and a default at the minimum for transactions that start before they
/// are allocated (or while the charger is offline).
async fn install_fallback(
    app: &AppContext,
    charger: &SiteChargerRecord,
    view: &SiteView<'_>,
) -> (String, bool) {
    let phases = view.charger_phases(charger);
    let mut ok = true;
    for (scope, amps, label) in [
        (LimitScope::Charger, charger.max_amps, "charger"),
        (LimitScope::NewTransactions, charger.min_amps, "default"),
    ] {
        let command = ChargerCommand::LimitCurrent {
            scope,
            connector_id: 0,
            transaction_id: None,
            transaction_ref: None,
            amps,
            phases,
        };
        let accepted = matches!(
            registry::execute(app, &charger.charger_id, command).await,
            Ok(reply) if reply.get("status").and_then(|s| s.as_str()) == Some("Accepted")
        );
        app.metrics
            .smart_profiles_total
            .with_label_values(&[label, if accepted { "accepted" } else { "failed" }])
            .inc();
        ok &= accepted;
    }
    if !ok {
        tracing::warn!(charger_id = %charger.charger_id, "fallback profiles not accepted");
    }
    (charger.charger_id.clone(), ok)
}

/// Reads the composite schedule of each pushed connector back; a charger whose schedule does
/// not show its allocation is marked not applied, so the next round pushes it again.
/// What to read back from a charger after a push.
struct Check {
    session_id: Uuid,
    charger_id: String,
    connector_id: i32,
    amps: f64,
    v201: bool,
    amps_per_watt: f64,
}

/// Reads the composite schedule of each pushed connector back; a charger whose schedule does
/// not show its allocation is marked not applied, so the next round pushes it again.
async fn verify(app: &AppContext, checks: Vec<Check>) {
    stream::iter(checks.into_iter().map(|check| async move {
        let payload = if check.v201 {
            json!({ "evseId": check.connector_id, "duration": 60, "chargingRateUnit": "A" })
        } else {
            json!({ "connectorId": check.connector_id, "duration": 60, "chargingRateUnit": "A" })
        };
        let command = ChargerCommand::Raw {
            action: "GetCompositeSchedule".into(),
            payload,
        };
        let Ok(reply) = registry::execute(app, &check.charger_id, command).await else {
            return;
        };
        let schedule = reply
            .get("chargingSchedule")
            .or_else(|| reply.get("schedule"));
        let limit = schedule
            .and_then(|s| s.get("chargingSchedulePeriod"))
            .and_then(|p| p.get(0))
            .and_then(|p| p.get("limit"))
            .and_then(|l| l.as_f64());
        let unit = schedule
            .and_then(|s| s.get("chargingRateUnit"))
            .and_then(|u| u.as_str());
        let held = match (limit, unit) {
            (Some(limit), Some("A")) => Some(limit),
            (Some(watts), Some("W")) => Some(watts * check.amps_per_watt),
            _ => None,
        };
        let Some(held) = held else { return };
        // holding less than allocated is safe (another limit of its own); more is not
        let matches = held <= check.amps + 0.2;
        app.metrics
            .smart_profiles_total
            .with_label_values(&["verified", if matches { "accepted" } else { "failed" }])
            .inc();
        if !matches {
            tracing::warn!(charger_id = %check.charger_id, session_id = %check.session_id, allocated = check.amps, held, "composite schedule does not hold the allocation");
            let _ = sites::mark_applied(&app.db, check.session_id, check.amps, false).await;
        }
    }))
    .buffer_unordered(PUSH_CONCURRENCY)
    .collect::<Vec<_>>()
    .await;
}

fn publish_metrics(app: &AppContext, site_id: Uuid, load: &serde_json::Value) {
    let site = site_id.to_string();
    for (kind, gauge) in [
        ("allocatedAmps", &app.metrics.site_allocated_amps),
        ("measuredAmps", &app.metrics.site_measured_amps),
    ] {
        if let Some(values) = load.get(kind).and_then(|v| v.as_array()) {
            for (phase, value) in values.iter().enumerate() {
                gauge
                    .with_label_values(&[&site, input::PHASE_NAMES[phase.min(2)]])
                    .set(value.as_f64().unwrap_or_default());
            }
        }
    }
}

//! The app side of a run, as the mobile app would drive it: drivers register and top up their
//! wallets over GraphQL (their idTags are then presented at chargers as RFID cards), and
//! app-driven chargers get their sessions through `startSession` / `endSession`, followed with
//! the `onSessionStatusChanged` subscription. Whether the server has the session API is
//! detected at startup; without it app sessions are reported as skipped, never faked.

pub mod graphql;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::charger::Plan;
use crate::scenario::Scenario;
use crate::stats::{Counter, Stats};
use graphql::{Gql, GqlError};

/// Drivers registered concurrently at most.
const REGISTER_CONCURRENCY: usize = 8;
/// How long the app waits for a session to reach the next status.
const STATUS_WAIT: Duration = Duration::from_secs(60);
/// startSession is retried this often while the charger is not connected yet.
const OFFLINE_RETRIES: u32 = 30;
/// The password of every simulated driver.
const DRIVER_PASSWORD: &str = "simulated driver password";

/// What the app side did, for the report.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct AppReport {
    /// `not requested`, `ran` or `skipped`.
    pub status: String,
    /// Why it was skipped.
    pub reason: Option<String>,
    /// Drivers registered.
    pub users_registered: u64,
    /// App sessions planned.
    pub sessions_planned: u64,
    /// startSession calls that returned a session.
    pub sessions_requested: u64,
    /// Sessions that reached IN_PROGRESS.
    pub sessions_in_progress: u64,
    /// Sessions that reached COMPLETED.
    pub sessions_completed: u64,
    /// Planned sessions the run ended before (too close to its end to start): not failures.
    pub sessions_not_started: u64,
    /// Sessions that failed, by reason.
    pub failures: BTreeMap<String, u64>,
}

/// Shared counters of the app drivers.
#[derive(Default)]
pub struct AppCounters {
    requested: AtomicU64,
    in_progress: AtomicU64,
    completed: AtomicU64,
    not_started: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl AppCounters {
    fn fail(&self, reason: String) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }
}

/// What preparation produced.
pub struct Setup {
    /// Tags for local sessions: registered drivers' first, then the scenario's.
    pub id_tags: Vec<String>,
    /// Ready to drive app sessions, if the server supports them.
    pub driver: Option<Driver>,
    /// The report so far.
    pub report: AppReport,
    /// Counters the drivers fill in.
    pub counters: Arc<AppCounters>,
}

/// Everything an app session driver needs.
#[derive(Clone)]
pub struct Driver {
    gql: Gql,
    station_id: String,
}

/// Registers drivers and detects the session API.
pub async fn prepare(scenario: &Scenario, plans: &[Plan]) -> Setup {
    let planned: u64 = plans.iter().map(|p| u64::from(p.app_sessions)).sum();
    let mut setup = Setup {
        id_tags: Vec::new(),
        driver: None,
        report: AppReport {
            status: "not requested".into(),
            sessions_planned: planned,
            ..AppReport::default()
        },
        counters: Arc::new(AppCounters::default()),
    };
    let Some(url) = scenario.graphql_url() else {
        setup.id_tags = scenario.sessions.id_tags.clone();
        return setup;
    };
    let mut gql = Gql::new(&url);
    if let (Some(email), Some(password)) = (
        &scenario.app.operator_email,
        &scenario.app.operator_password,
    ) {
        gql = gql.with_funder(email, password);
    }
    if scenario.app.users > 0 {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let (tags, failures) = register_users(&gql, scenario, &run[..8]).await;
        setup.report.users_registered = tags.len() as u64;
        for (reason, n) in failures {
            *setup
                .report
                .failures
                .entry(format!("register: {reason}"))
                .or_default() += n;
        }
        setup.id_tags = tags;
    }
    setup
        .id_tags
        .extend(scenario.sessions.id_tags.iter().cloned());
    if planned == 0 {
        return setup;
    }
    let probe = "mutation { startSession(input: { stationId: \"probe\" }) { id } }";
    match gql.has_mutation("startSession", probe).await {
        Ok(true) => {}
        Ok(false) => {
            setup.report.status = "skipped".into();
            setup.report.reason = Some("the server has no startSession mutation (its sessions feature has not landed): app-driven sessions were not run".into());
            return setup;
        }
        Err(e) => {
            setup.report.status = "skipped".into();
            setup.report.reason = Some(format!(
                "could not inspect the GraphQL schema at {url}: {e}"
            ));
            return setup;
        }
    }
    let (Some(station_id), Some(email), Some(password)) = (
        &scenario.app.station_id,
        &scenario.app.operator_email,
        &scenario.app.operator_password,
    ) else {
        setup.report.status = "skipped".into();
        setup.report.reason = Some("app sessions need [app] station_id, operator_email and operator_password (chargers must belong to a station for startSession)".into());
        return setup;
    };
    let operator = match gql.login(email, password).await {
        Ok(token) => token,
        Err(e) => {
            setup.report.status = "skipped".into();
            setup.report.reason = Some(format!("operator login failed: {e}"));
            return setup;
        }
    };
    for plan in plans.iter().filter(|p| p.app_sessions > 0) {
        if let Err(e) = gql
            .register_charger(
                &operator,
                &plan.id,
                station_id,
                scenario
                    .app_password
                    .as_deref()
                    .or(scenario.password.as_deref()),
            )
            .await
        {
            *setup
                .report
                .failures
                .entry(format!("registerCharger: {}", e.code()))
                .or_default() += 1;
        }
    }
    setup.report.status = "ran".into();
    setup.driver = Some(Driver {
        gql,
        station_id: station_id.clone(),
    });
    setup
}

async fn register_users(
    gql: &Gql,
    scenario: &Scenario,
    run: &str,
) -> (Vec<String>, BTreeMap<String, u64>) {
    let mut tags = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let users: Vec<u32> = (0..scenario.app.users).collect();
    for chunk in users.chunks(REGISTER_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &i in chunk {
            let gql = gql.clone();
            let email = format!(
                "sim-{run}-{}{i}@loadtest.example.com",
                scenario
                    .id_prefix
                    .to_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "")
            );
            let amount = scenario.app.top_up.clone();
            set.spawn(async move {
                let (token, tag) = gql.register(&email, DRIVER_PASSWORD).await?;
                gql.top_up(&token, &amount, &format!("sim-topup-{email}"))
                    .await?;
                Ok::<String, GqlError>(tag)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(tag)) if !tag.is_empty() => tags.push(tag),
                Ok(Ok(_)) => *failures.entry("no idTag in the answer".into()).or_default() += 1,
                Ok(Err(e)) => *failures.entry(e.code().to_string()).or_default() += 1,
                Err(e) => *failures.entry(e.to_string()).or_default() += 1,
            }
        }
    }
    (tags, failures)
}

/// Drives the app sessions of one charger, one after the other.
pub async fn drive(
    driver: Driver,
    plan: Plan,
    scenario: Arc<Scenario>,
    stats: Arc<Stats>,
    counters: Arc<AppCounters>,
    start: Instant,
    deadline: Instant,
) {
    let shard = plan.index as usize;
    let email = format!(
        "app-{}-{}@loadtest.example.com",
        plan.id.to_lowercase(),
        uuid::Uuid::new_v4().simple()
    );
    let token = match driver.gql.register(&email, DRIVER_PASSWORD).await {
        Ok((token, _)) => token,
        Err(e) => {
            for _ in 0..plan.app_sessions {
                counters.fail(format!("register: {}", e.code()));
                stats.incr(shard, Counter::SessionsFailed);
            }
            return;
        }
    };
    let _ = driver
        .gql
        .top_up(&token, &scenario.app.top_up, &format!("topup-{email}"))
        .await;
    let length = Duration::from_secs_f64(scenario.sessions.length_secs);
    let mut next = start + plan.first_session_after + Duration::from_secs(1);
    for _ in 0..plan.app_sessions {
        tokio::time::sleep_until(next).await;
        // when this session was due: a fixed cadence counts from it
        let due = next;
        // a session starts only if it can run its length before the deadline; its final
        // status is awaited during the drain
        if Instant::now() + length > deadline {
            // the run is over for this charger: what is left of its plan is not a failure
            counters.not_started.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let window = Window {
            length,
            deadline,
            end_by: deadline + Duration::from_secs_f64(scenario.drain_secs.max(0.0)),
        };
        match one_session(&driver, &token, &plan.id, &window, &stats, shard, &counters).await {
            Ok(()) => {
                counters.completed.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => counters.fail(reason),
        }
        next = next_app_session(&scenario.sessions, due, Instant::now());
    }
}

/// When an app-driven charger's next session starts, the one due at `due` having ended at `now`:
/// `gap_secs` after it ended (closed loop), or on the cadence of `every_secs` (open loop; at once
/// when the cadence is behind, as for local sessions).
fn next_app_session(sessions: &crate::scenario::Sessions, due: Instant, now: Instant) -> Instant {
    match sessions.every_secs {
        Some(every) => (due + Duration::from_secs_f64(every)).max(now),
        None => now + Duration::from_secs_f64(sessions.gap_secs),
    }
}

/// When one app session may run.
struct Window {
    /// How long it charges.
    length: Duration,
    /// When the chargers start draining: the app ends its session before that.
    deadline: Instant,
    /// The last moment to wait for a status: the run's drain ends then.
    end_by: Instant,
}

async fn wait_for(
    rx: &mut tokio::sync::mpsc::Receiver<String>,
    wanted: &str,
    end_by: Instant,
) -> Result<(), String> {
    let deadline = (Instant::now() + STATUS_WAIT).min(end_by);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(status)) if status == wanted => return Ok(()),
            Ok(Some(status)) if matches!(status.as_str(), "REJECTED" | "FAILED") => {
                return Err(format!("session {status}"))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("subscription ended before {wanted}")),
            Err(_) if deadline == end_by => {
                return Err(format!("no {wanted} by the end of the run"))
            }
            Err(_) => return Err(format!("no {wanted} within {}s", STATUS_WAIT.as_secs())),
        }
    }
}

async fn one_session(
    driver: &Driver,
    token: &str,
    charger_id: &str,
    window: &Window,
    stats: &Stats,
    shard: usize,
    counters: &AppCounters,
) -> Result<(), String> {
    let mut attempt = 0;
    let requested = Instant::now();
    let session_id = loop {
        let sent = Instant::now();
        match driver
            .gql
            .start_session(token, &driver.station_id, charger_id)
            .await
        {
            Ok((id, _)) => {
                stats.round_trip(shard, "app:startSession", sent.elapsed());
                break id;
            }
            Err(e) if e.code() == "CHARGER_OFFLINE" && attempt < OFFLINE_RETRIES => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(format!("startSession: {}", e.code())),
        }
    };
    counters.requested.fetch_add(1, Ordering::Relaxed);
    let result = follow_session(
        driver,
        token,
        &session_id,
        requested,
        window,
        (stats, shard),
        counters,
    )
    .await;
    if result.is_err() {
        // as an app would: a session it lost track of is ended, not left to hold the connector
        let _ = driver.gql.end_session(token, &session_id).await;
    }
    result
}

/// A started session from IN_PROGRESS to COMPLETED: watches it, charges, ends it.
async fn follow_session(
    driver: &Driver,
    token: &str,
    session_id: &str,
    requested: Instant,
    window: &Window,
    (stats, shard): (&Stats, usize),
    counters: &AppCounters,
) -> Result<(), String> {
    let session_id = session_id.to_string();
    let mut statuses = driver
        .gql
        .watch_session(token, &session_id)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    // the subscription's first update is the session as it is now (the contract's "first as
    // it is now"): a transition before the subscription started is not missed
    wait_for(&mut statuses, "IN_PROGRESS", window.end_by).await?;
    stats.round_trip(shard, "app:start_to_in_progress", requested.elapsed());
    counters.in_progress.fetch_add(1, Ordering::Relaxed);
    // a slow start eats into the charging time: the app ends its session before the charger
    // drains (and stops it locally), so every app session ends through endSession
    let charge_until = (Instant::now() + window.length).min(window.deadline);
    tokio::time::sleep_until(charge_until).await;
    let stop = Instant::now();
    let status = driver
        .gql
        .end_session(token, &session_id)
        .await
        .map_err(|e| format!("endSession: {}", e.code()))?;
    stats.round_trip(shard, "app:endSession", stop.elapsed());
    if status != "COMPLETED" {
        // every update since the first is on the subscription, a COMPLETED before this answer
        // too
        wait_for(&mut statuses, "COMPLETED", window.end_by).await?;
    }
    stats.round_trip(shard, "app:end_to_completed", stop.elapsed());
    Ok(())
}

/// The final app report.
pub fn finish(mut report: AppReport, counters: &AppCounters) -> AppReport {
    report.sessions_requested = counters.requested.load(Ordering::Relaxed);
    report.sessions_in_progress = counters.in_progress.load(Ordering::Relaxed);
    report.sessions_not_started = counters.not_started.load(Ordering::Relaxed);
    report.sessions_completed = counters.completed.load(Ordering::Relaxed);
    for (reason, n) in counters
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        *report.failures.entry(reason.clone()).or_default() += n;
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Sessions;

    #[test]
    fn an_app_charger_on_a_cadence_starts_when_due_or_at_once_when_behind() {
        let t0 = Instant::now();
        let secs = Duration::from_secs_f64;
        let cadence = Sessions {
            every_secs: Some(1.1),
            gap_secs: 0.3,
            ..Sessions::default()
        };
        // the session due at t0 ended at t0 + 0.7 s: the next is due one period after t0
        assert_eq!(
            next_app_session(&cadence, t0, t0 + secs(0.7)),
            t0 + secs(1.1)
        );
        // it ended after its successor was due: the next starts at once
        assert_eq!(
            next_app_session(&cadence, t0, t0 + secs(1.5)),
            t0 + secs(1.5)
        );
        let closed = Sessions {
            every_secs: None,
            gap_secs: 0.3,
            ..Sessions::default()
        };
        // closed loop: the gap counts from the end
        assert_eq!(
            next_app_session(&closed, t0, t0 + secs(0.7)),
            t0 + secs(1.0)
        );
    }
}

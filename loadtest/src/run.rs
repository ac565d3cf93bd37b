//! A whole run: plan every charger, prepare the app side, ramp connections up at the configured
//! rate, sample a per-second timeline (and the live progress line), start the measurement
//! window after ramp-up and warm-up, wait for every charger to drain, and build the report.
//! Everything is bounded: the run ends at `duration + drain` plus a short grace at the latest.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::app;
use crate::charger::{self, Env, Plan};
use crate::connect::OcppVersion;
use crate::report::{latency, Point, Report};
use crate::scenario::{Scenario, ScenarioError};
use crate::stats::Stats;

/// Charger tasks still running this long after the drain are aborted.
const GRACE: Duration = Duration::from_secs(10);
/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: u64 = 10;

/// How the run reports while it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A live bar on a terminal, plain lines every 10 s otherwise.
    Auto,
    /// Nothing until the end.
    Quiet,
}

/// Runs `scenario` to completion and returns its report.
pub async fn run(scenario: Scenario, progress: Progress) -> Result<Report, ScenarioError> {
    scenario.validate()?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let scenario = Arc::new(scenario);
    let plans: Vec<Plan> = (0..scenario.chargers)
        .map(|n| Plan::for_charger(&scenario, n))
        .collect();
    let setup = app::prepare(&scenario, &plans).await;
    let stats = Arc::new(Stats::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = shutdown_tx.send(true);
        }
    });
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(scenario.duration_secs);
    let env = Env {
        ramp_end: start + Duration::from_secs_f64(scenario.ramp_secs()),
        scenario: scenario.clone(),
        stats: stats.clone(),
        id_tags: Arc::new(setup.id_tags.clone()),
        start,
        deadline,
        shutdown: shutdown_rx.clone(),
    };
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample(
        stats.clone(),
        timeline.clone(),
        scenario.chargers,
        start,
        progress,
    ));

    let mut chargers = JoinSet::new();
    let mut drivers = JoinSet::new();
    for (i, plan) in plans.iter().enumerate() {
        if scenario.ramp_up_per_sec > 0.0 {
            let at = start + Duration::from_secs_f64(i as f64 / scenario.ramp_up_per_sec);
            tokio::time::sleep_until(at.min(deadline)).await;
        }
        if Instant::now() >= deadline || *shutdown_rx.borrow() {
            break;
        }
        if let (Some(driver), true) = (&setup.driver, plan.app_sessions > 0) {
            drivers.spawn(app::drive(
                driver.clone(),
                plan.clone(),
                scenario.clone(),
                stats.clone(),
                setup.counters.clone(),
                Instant::now(),
                deadline,
            ));
        }
        chargers.spawn(charger::run(plan.clone(), env.clone()));
    }
    let warmup = Duration::from_secs_f64(scenario.warmup_secs);
    let measuring = {
        let stats = stats.clone();
        tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            stats.reset_measurements();
        })
    };
    // the machine's CPU over the same window, up to the deadline (the drain is not load)
    let machine = tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        let from = Instant::now();
        let first = crate::machine::Reading::now_off_thread().await?;
        tokio::time::sleep_until(deadline).await;
        let last = crate::machine::Reading::now_off_thread().await?;
        Some(first.until(&last, from.elapsed().as_secs_f64()))
    });
    let hard_stop = deadline + Duration::from_secs_f64(scenario.drain_secs) + GRACE;
    while let Ok(Some(_)) = tokio::time::timeout_at(hard_stop, chargers.join_next()).await {}
    chargers.abort_all();
    while let Ok(Some(_)) = tokio::time::timeout_at(hard_stop, drivers.join_next()).await {}
    drivers.abort_all();
    if !measuring.is_finished() {
        // the run ended during warm-up: measure from now on is empty, say so honestly
        measuring.abort();
        stats.reset_measurements();
    }
    sampler.abort();
    ctrl_c.abort();

    let snap = stats.snapshot();
    let mut report = Report {
        scenario: scenario.name.clone(),
        started_at,
        elapsed_secs: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        chargers: scenario.chargers,
        ..Report::default()
    };
    for plan in &plans {
        let name = match plan.version {
            OcppVersion::V16 => "ocpp1.6",
            OcppVersion::V201 => "ocpp2.0.1",
        };
        *report.versions.entry(name.into()).or_default() += 1;
    }
    report.absorb(&snap);
    report.sessions.planned_local = plans.iter().map(|p| u64::from(p.local_sessions)).sum();
    report.sessions.app = app::finish(setup.report, &setup.counters);
    report.timeline = timeline.lock().map(|t| t.clone()).unwrap_or_default();
    report.simulator_cpu_secs = crate::report::own_cpu_secs();
    // the last reading is taken at the deadline; the chargers may have finished just before it
    // was done. A run that ended long before its window (interrupted) has none.
    report.machine = tokio::time::timeout(Duration::from_secs(2), machine)
        .await
        .ok()
        .and_then(|joined| joined.ok())
        .flatten();
    Ok(report)
}

async fn sample(
    stats: Arc<Stats>,
    timeline: Arc<Mutex<Vec<Point>>>,
    chargers: u32,
    start: Instant,
    progress: Progress,
) {
    let bar = (progress == Progress::Auto && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(u64::from(chargers));
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} open · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // a starved process shows as a gap in the timeline, not as a burst of empty seconds
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tick.tick().await;
    let mut seconds = 0u64;
    loop {
        tick.tick().await;
        seconds += 1;
        let (round_trips, window) = stats.take_window();
        let l = latency(&window);
        let open = stats.connected();
        if let Ok(mut t) = timeline.lock() {
            t.push(Point {
                t: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                open,
                round_trips,
                p50_ms: l.p50,
                p99_ms: l.p99,
            });
        }
        let line = format!(
            "{round_trips} round trips/s · p50 {:.2} ms · p99 {:.2} ms",
            l.p50, l.p99
        );
        match &bar {
            Some(bar) => {
                bar.set_position(u64::try_from(open).unwrap_or_default());
                bar.set_message(line);
            }
            None if progress == Progress::Auto && seconds % PLAIN_PROGRESS_EVERY == 0 => {
                eprintln!("loadtest: t={seconds}s open={open} {line}");
            }
            None => {}
        }
    }
}

//! One simulated charger: a task that connects, boots, sends heartbeats, runs charging sessions,
//! answers the CSMS's calls like real hardware, injects the faults the scenario asks for, and
//! reconnects. Like an OCPP-J charger it has at most one call of its own in flight; everything
//! else waits in a queue. A single `select!` loop owns the socket, so frames stay ordered.

mod link;
mod protocol;
mod sessions;
mod state;
mod v16;
mod v201;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::connect::{self, OcppVersion, Target};
use crate::scenario::{HeartbeatMode, Scenario};
use crate::stats::{Counter, Family, Stats};
pub use protocol::Outcome;
pub use state::{ChargerState, Connector, Status, Transaction};

/// Longest pause between two connection attempts of one charger.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a reset charger stays off before it boots again.
const REBOOT_DELAY: Duration = Duration::from_secs(3);
/// A boot that was not accepted is tried again after at least this long.
const MIN_BOOT_RETRY: Duration = Duration::from_secs(10);

/// What every charger of a run shares.
#[derive(Clone)]
pub struct Env {
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Where figures go.
    pub stats: Arc<Stats>,
    /// Tags presented for local sessions, round-robin.
    pub id_tags: Arc<Vec<String>>,
    /// When the run started.
    pub start: Instant,
    /// When the ramp-up is over (every charger has started connecting).
    pub ramp_end: Instant,
    /// When the load ends and chargers drain.
    pub deadline: Instant,
    /// Flips to `true` to end the run early (Ctrl-C).
    pub shutdown: watch::Receiver<bool>,
}

/// How a charger sends heartbeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HeartbeatPlan {
    /// At the BootNotification interval.
    Server,
    /// At a fixed period, starting after `offset`.
    Every {
        /// The period.
        period: Duration,
        /// Delay of the first one, spreading chargers evenly.
        offset: Duration,
    },
    /// Back to back.
    Max,
    /// Never.
    Off,
}

/// What one charger does in this run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Position among this process's chargers.
    pub index: u32,
    /// Charge point identity.
    pub id: String,
    /// Protocol.
    pub version: OcppVersion,
    /// Endpoint base URL.
    pub url: String,
    /// Source address to bind.
    pub source_ip: Option<IpAddr>,
    /// Local (RFID) sessions to run.
    pub local_sessions: u32,
    /// Sessions the app side drives on this charger through GraphQL.
    pub app_sessions: u32,
    /// Delay from boot to the first local session.
    pub first_session_after: Duration,
    /// Heartbeat behaviour.
    pub heartbeat: HeartbeatPlan,
}

/// Whether charger `n` of `total` is one of the `share` that run sessions: exactly
/// floor(total x share) of them (a coin per charger chose 218 or 223 of 220, so a scenario did not
/// offer the rate its numbers say), picked by a seeded permutation of the indexes
/// (n -> (a n + b) mod total, a coprime with total). Unlike every k-th charger, the chosen ones
/// do not line up with the URLs and source addresses, which are dealt out by index too.
fn in_share(n: u32, total: u32, share: f64, seed: u64) -> bool {
    if total == 0 {
        return false;
    }
    let total = u64::from(total);
    // the small term keeps a share written with six decimals (0.022000) from losing its last
    // charger to rounding (10000 * 0.022 is a hair under 220 in binary)
    let chosen = (total as f64 * share.clamp(0.0, 1.0) + 1e-9).floor() as u64;
    let a = [7_919u64, 104_729, 1_299_709, 15_485_863]
        .into_iter()
        .find(|p| total % p != 0)
        .unwrap_or(1);
    (u64::from(n) * a + seed % total) % total < chosen
}

impl Plan {
    /// The plan of charger `n` of `scenario` (deterministic for a given seed).
    pub fn for_charger(scenario: &Scenario, n: u32) -> Self {
        let mut rng = StdRng::seed_from_u64(scenario.seed ^ (u64::from(n) << 20) ^ 0x5eed);
        let version = if rng.gen_bool(scenario.ocpp201_share) {
            OcppVersion::V201
        } else {
            OcppVersion::V16
        };
        // the coin that used to choose is still drawn, so the draws after it stay as they were
        let _ = rng.gen_bool(scenario.sessions.charger_share);
        let runs_sessions = in_share(
            n,
            scenario.chargers,
            scenario.sessions.charger_share,
            scenario.seed,
        );
        let local = rng.gen_bool(scenario.sessions.local_share);
        let sessions = if runs_sessions {
            scenario.sessions.per_charger
        } else {
            0
        };
        let (local_sessions, app_sessions) = if local { (sessions, 0) } else { (0, sessions) };
        let [lo, hi] = scenario.sessions.start_after_secs;
        // On a fixed cadence the first session's offset stays each charger's phase for the
        // whole run: drawn over exactly one period, the phases are even whatever the connect
        // times (a connect time plus a uniform offset of one period is uniform modulo it), so
        // the chargers offer a steady rate rather than waves.
        let first_session_after = match scenario.sessions.every_secs {
            Some(every) => Duration::from_secs_f64(lo + rng.gen_range(0.0..every)),
            None => Duration::from_secs_f64(rng.gen_range(lo..=hi)),
        };
        let heartbeat = match scenario.heartbeat.mode {
            HeartbeatMode::Server => HeartbeatPlan::Server,
            HeartbeatMode::Off => HeartbeatPlan::Off,
            HeartbeatMode::Max => HeartbeatPlan::Max,
            HeartbeatMode::Interval | HeartbeatMode::Rate => {
                let secs = if scenario.heartbeat.mode == HeartbeatMode::Rate {
                    f64::from(scenario.chargers) / scenario.heartbeat.rate
                } else {
                    scenario.heartbeat.interval_secs
                };
                let period = Duration::from_secs_f64(secs.max(0.001));
                HeartbeatPlan::Every {
                    period,
                    offset: period.mul_f64(rng.gen::<f64>()),
                }
            }
        };
        let urls = &scenario.urls;
        let ips = &scenario.source_ips;
        let slot = n as usize;
        Self {
            index: n,
            id: scenario.charger_id(n),
            version,
            url: urls[slot % urls.len().max(1)].clone(),
            source_ip: (!ips.is_empty()).then(|| ips[slot % ips.len()]),
            local_sessions,
            app_sessions,
            first_session_after,
            heartbeat,
        }
    }
}

/// Runs one charger until the scenario's end (plus drain), reconnecting as configured.
pub async fn run(plan: Plan, env: Env) {
    let shard = plan.index as usize;
    let stats = env.stats.clone();
    let scenario = env.scenario.clone();
    let mut rng = StdRng::seed_from_u64(scenario.seed ^ u64::from(plan.index));
    let mut charger = link::Charger::new(plan.clone(), env.clone(), &mut rng);
    let connect_timeout = Duration::from_secs_f64(scenario.connect_timeout_secs);
    let mut failures: u32 = 0;
    let mut first = true;
    let mut connected_before = false;
    loop {
        if Instant::now() >= env.deadline || *env.shutdown.borrow() {
            break;
        }
        if !first {
            stats.incr(shard, Counter::Reconnects);
        }
        first = false;
        stats.incr(shard, Counter::ConnAttempted);
        let target = Target {
            url: &plan.url,
            source_ip: plan.source_ip,
            charger_id: &plan.id,
            version: plan.version,
            password: if plan.app_sessions > 0 {
                scenario
                    .app_password
                    .as_deref()
                    .or(scenario.password.as_deref())
            } else {
                scenario.password.as_deref()
            },
        };
        let dialled = Instant::now();
        let delay = match connect::connect(&target, connect_timeout).await {
            Ok(mut ws) => {
                // TCP connect + WebSocket upgrade (the server's handshake checks included)
                stats.latency(shard, "handshake", dialled.elapsed());
                failures = 0;
                stats.incr(shard, Counter::ConnEstablished);
                if connected_before {
                    stats.reconnected(shard);
                }
                connected_before = true;
                stats.connection_opened();
                let outcome = charger.run_connection(&mut ws).await;
                stats.connection_closed();
                match outcome {
                    Outcome::Finished => break,
                    Outcome::Reboot => REBOOT_DELAY,
                    Outcome::Dropped => {
                        stats.incr(shard, Counter::ConnDroppedByFault);
                        let [lo, hi] = scenario.faults.reconnect_delay_ms;
                        Duration::from_millis(rng.gen_range(lo..=hi))
                    }
                    Outcome::ClosedByServer(reason) => {
                        stats.incr(shard, Counter::ConnClosedByServer);
                        stats.incr_label(
                            shard,
                            Family::Errors,
                            &format!("connection lost: {reason}"),
                        );
                        backoff(&mut rng, 1)
                    }
                }
            }
            Err(failure) => {
                stats.incr_label(shard, Family::ConnFailures, &failure.reason());
                if !failure.retryable() {
                    stats.incr_label(shard, Family::Errors, &failure.to_string());
                    // its sessions cannot happen: say so instead of silently planning them
                    for _ in 0..charger.sessions_left {
                        stats.incr(shard, Counter::SessionsSkipped);
                    }
                    break;
                }
                failures += 1;
                backoff(&mut rng, failures)
            }
        };
        if !scenario.reconnect {
            break;
        }
        let mut shutdown = env.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep_until((Instant::now() + delay).min(env.deadline)) => {}
            _ = shutdown.changed() => break,
        }
    }
    charger.abandon_open_sessions();
}

/// Exponential backoff with full jitter: up to 2^(attempt-1) s, capped at [`MAX_BACKOFF`].
fn backoff(rng: &mut StdRng, attempt: u32) -> Duration {
    let ceiling =
        Duration::from_secs(1u64 << attempt.clamp(1, 6).saturating_sub(1)).min(MAX_BACKOFF);
    ceiling.mul_f64(rng.gen_range(0.2..=1.0))
}

/// Answers a CSMS-initiated call the way a simulated charger of `version` does (charging
/// profiles, configuration, availability, ...), for tests that drive a charger's socket
/// themselves but want the simulator's behaviour: `Ok(payload)` for a CALLRESULT,
/// `Err((code, description))` for a CALLERROR. Follow-ups (status changes, stops) are left out.
pub fn answer_call(
    version: OcppVersion,
    state: &mut ChargerState,
    action: &str,
    payload: serde_json::Value,
) -> Result<serde_json::Value, (&'static str, String)> {
    use protocol::Protocol;
    match version {
        OcppVersion::V16 => v16::V16.handle_call(state, action, payload).reply,
        OcppVersion::V201 => v201::V201.handle_call(state, action, payload).reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_share_of_chargers_runs_sessions_spread_over_urls_and_addresses() {
        for (n, share, expected) in [
            (10_000, 0.022, 220),
            (1000, 0.75, 750),
            (1000, 0.5, 500),
            (150, 1.0, 150),
            (7, 0.0, 0),
        ] {
            let chosen: Vec<u32> = (0..n).filter(|&k| in_share(k, n, share, 42)).collect();
            assert_eq!(chosen.len(), expected, "{share} of {n}");
            // neither every other charger (two URLs) nor every third (three addresses)
            for m in [2u32, 3] {
                for r in 0..m {
                    let here = chosen.iter().filter(|&&k| k % m == r).count();
                    assert!(
                        here * (m as usize) * 10 >= expected * 8,
                        "{share} of {n}: {here} of {expected} at {r} mod {m}"
                    );
                }
            }
            // and not bunched at one end of the ramp
            let first_half = chosen.iter().filter(|&&k| k < n / 2).count();
            assert!(first_half * 10 >= expected * 4 && first_half * 10 <= expected * 6);
        }
    }

    #[test]
    fn plans_spread_chargers_over_urls_and_source_ips_and_follow_the_mix() {
        let scenario = Scenario {
            chargers: 1000,
            urls: vec!["ws://a/ocpp".into(), "ws://b/ocpp".into()],
            source_ips: vec![
                IpAddr::from([127, 0, 0, 2]),
                IpAddr::from([127, 0, 0, 3]),
                IpAddr::from([127, 0, 0, 4]),
            ],
            ocpp201_share: 0.25,
            ..Scenario::default()
        };
        let plans: Vec<Plan> = (0..1000).map(|n| Plan::for_charger(&scenario, n)).collect();
        assert_eq!(plans[0].url, "ws://a/ocpp");
        assert_eq!(plans[1].url, "ws://b/ocpp");
        assert_eq!(plans[5].source_ip, Some(IpAddr::from([127, 0, 0, 4])));
        let v201 = plans
            .iter()
            .filter(|p| p.version == OcppVersion::V201)
            .count();
        assert!((180..=320).contains(&v201), "{v201} of 1000 speak 2.0.1");
        let again = Plan::for_charger(&scenario, 7);
        assert_eq!(again.version, plans[7].version, "plans are deterministic");
    }

    #[test]
    fn rate_mode_divides_the_aggregate_rate_over_the_chargers() {
        let mut scenario = Scenario {
            chargers: 10_000,
            ..Scenario::default()
        };
        scenario.heartbeat.mode = HeartbeatMode::Rate;
        scenario.heartbeat.rate = 30_000.0;
        let plan = Plan::for_charger(&scenario, 3);
        let HeartbeatPlan::Every { period, offset } = plan.heartbeat else {
            panic!("rate mode gives a fixed period");
        };
        assert!((period.as_secs_f64() - 1.0 / 3.0).abs() < 1e-6);
        assert!(offset < period);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!(backoff(&mut rng, 1) <= Duration::from_secs(1));
        for _ in 0..100 {
            assert!(backoff(&mut rng, 50) <= MAX_BACKOFF);
        }
    }
}

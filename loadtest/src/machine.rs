//! Where the machine's CPU went during the measurement window, read from /proc (Linux only).
//!
//! The simulator usually shares its cores with the system under test and the services behind
//! it (PostgreSQL, RabbitMQ, Redis). A latency figure means little without knowing how busy the
//! machine was while it was measured, and who kept it busy: the report carries the machine's
//! busy share and the cores each process name used over the same window.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

/// USER_HZ: clock ticks per second in /proc figures (100 on every Linux platform Rust supports).
const TICKS_PER_SEC: f64 = 100.0;

/// Processes whose parent is kthreadd (pid 2) are kernel threads: reported together.
const KERNEL_THREADS: &str = "[kernel threads]";

/// A point-in-time reading of the machine's and every process's CPU counters.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// Aggregate `cpu` line of /proc/stat: user, nice, system, idle, iowait, irq, softirq, steal.
    totals: [u64; 8],
    /// CPUs /proc/stat counts (its `cpuN` lines).
    cpus: usize,
    /// Per (pid, start time): (name, user + system ticks). The start time tells a reused pid.
    processes: HashMap<(u32, u64), (String, u64)>,
}

/// The machine over a window.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct MachineCpu {
    /// Length of the window (s).
    pub seconds: f64,
    /// CPUs the kernel counts.
    pub cpus: usize,
    /// Share of all CPU time that was not idle, waiting for I/O or stolen by the hypervisor (0..1).
    pub busy_share: f64,
    /// Share of all CPU time spent in user space (nice included; 0..1).
    pub user_share: f64,
    /// ... in the kernel on behalf of processes.
    pub system_share: f64,
    /// ... in interrupts and softirqs (loopback networking is counted here).
    pub softirq_share: f64,
    /// ... taken by the hypervisor for other guests.
    pub steal_share: f64,
    /// Cores used on average by each process name (user + system), busiest first in the text
    /// report; kernel threads together. A process that ended inside the window (a PostgreSQL
    /// autovacuum worker, say) is missing: its time is not counted, so these can add up to less
    /// than the busy share.
    pub cores_by_process: BTreeMap<String, f64>,
}

impl Reading {
    /// Reads /proc now; `None` where /proc is not Linux's.
    pub fn now() -> Option<Reading> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
        let mut totals = [0u64; 8];
        for (slot, field) in totals.iter_mut().zip(cpu.split_whitespace().skip(1)) {
            *slot = field.parse().ok()?;
        }
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .count();
        let mut processes = HashMap::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // a process may end between the listing and the read: skip it
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((name, ticks, started)) = parse_pid_stat(&stat) {
                processes.insert((pid, started), (name, ticks));
            }
        }
        Some(Reading {
            totals,
            cpus,
            processes,
        })
    }

    /// [`Reading::now`] on a blocking thread: the reader's own tasks run on while /proc is read.
    pub async fn now_off_thread() -> Option<Reading> {
        tokio::task::spawn_blocking(Reading::now)
            .await
            .ok()
            .flatten()
    }

    /// What happened between `self` and the later reading `end`, `seconds` apart.
    pub fn until(&self, end: &Reading, seconds: f64) -> MachineCpu {
        let delta: Vec<u64> = self
            .totals
            .iter()
            .zip(end.totals.iter())
            .map(|(a, b)| b.saturating_sub(*a))
            .collect();
        let all: u64 = delta.iter().sum();
        let share = |ticks: u64| {
            if all == 0 {
                0.0
            } else {
                round3(ticks as f64 / all as f64)
            }
        };
        let not_busy = delta[3] + delta[4] + delta[7];
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        for (key, (name, ticks)) in &end.processes {
            // a process that started inside the window counts from zero
            let before = self.processes.get(key).map_or(0, |(_, old)| *old);
            *by_name.entry(name.clone()).or_default() += ticks.saturating_sub(before);
        }
        let cores_by_process = by_name
            .into_iter()
            .filter(|(_, ticks)| *ticks > 0)
            .map(|(name, ticks)| {
                let cores = if seconds > 0.0 {
                    round3(ticks as f64 / TICKS_PER_SEC / seconds)
                } else {
                    0.0
                };
                (name, cores)
            })
            .collect();
        MachineCpu {
            seconds: (seconds * 10.0).round() / 10.0,
            cpus: end.cpus,
            busy_share: share(all.saturating_sub(not_busy)),
            user_share: share(delta[0] + delta[1]),
            system_share: share(delta[2]),
            softirq_share: share(delta[5] + delta[6]),
            steal_share: share(delta[7]),
            cores_by_process,
        }
    }
}

/// (name, user + system ticks, start time) from a /proc/<pid>/stat line; kernel threads share one
/// name.
pub(crate) fn parse_pid_stat(stat: &str) -> Option<(String, u64, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // fields after the name: state (0), ppid (1), ..., utime (11), stime (12), ..., starttime (19)
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ppid: u32 = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let started: u64 = fields.get(19)?.parse().ok()?;
    let name = if ppid == 2 || comm == "kthreadd" {
        KERNEL_THREADS.to_string()
    } else {
        comm.to_string()
    };
    Some((name, utime + stime, started))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl MachineCpu {
    /// One line: busy share and the busiest process names.
    pub fn summary(&self) -> String {
        let mut busiest: Vec<_> = self.cores_by_process.iter().collect();
        busiest.sort_by(|a, b| b.1.total_cmp(a.1));
        let top: Vec<String> = busiest
            .into_iter()
            .take(6)
            .map(|(name, cores)| format!("{name} {cores:.2}"))
            .collect();
        format!(
            "machine over {:.0} s: {:.1} % busy of {} CPUs (user {:.1} %, system {:.1} %, softirq {:.1} %, steal {:.1} %); cores: {}",
            self.seconds,
            self.busy_share * 100.0,
            self.cpus,
            self.user_share * 100.0,
            self.system_share * 100.0,
            self.softirq_share * 100.0,
            self.steal_share * 100.0,
            top.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_stat_line_with_spaces_and_parentheses_in_its_name_is_read() {
        let line =
            "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 3 0 777 1 1";
        assert_eq!(
            parse_pid_stat(line),
            Some(("tokio (rt) 1".to_string(), 175, 777))
        );
        let kworker = "77 (kworker/0:1) I 2 0 0 0 -1 69238880 0 0 0 0 3 9 0 0 20 0 1 0 1 0 0";
        assert_eq!(
            parse_pid_stat(kworker),
            Some((KERNEL_THREADS.to_string(), 12, 1))
        );
    }

    /// A reading of two CPUs: `totals` and (pid, start time, name, ticks) per process.
    fn reading(totals: [u64; 8], processes: &[(u32, u64, &str, u64)]) -> Reading {
        Reading {
            totals,
            cpus: 2,
            processes: processes
                .iter()
                .map(|&(pid, started, name, ticks)| ((pid, started), (name.to_string(), ticks)))
                .collect(),
        }
    }

    #[test]
    fn a_window_counts_processes_by_name_and_new_ones_from_zero() {
        let start = reading(
            [100, 0, 50, 800, 10, 0, 5, 0],
            &[
                (10, 1, "postgres", 100),
                (11, 1, "postgres", 40),
                (12, 1, "gone", 40),
                // pid 13 was another process at the start: its counters do not carry over
                (13, 1, "beam.smp", 500),
            ],
        );
        let end = reading(
            [250, 0, 100, 980, 10, 0, 15, 10],
            &[
                (10, 1, "postgres", 160),
                (11, 1, "postgres", 80),
                (13, 900, "beam.smp", 50),
                (14, 950, "chargegrid", 30),
            ],
        );
        let cpu = start.until(&end, 2.0);
        // 400 ticks in all: 180 idle and 10 stolen
        assert_eq!(cpu.busy_share, round3(210.0 / 400.0));
        assert_eq!(cpu.steal_share, round3(10.0 / 400.0));
        assert_eq!(cpu.cpus, 2);
        assert_eq!(cpu.system_share, round3(50.0 / 400.0));
        assert_eq!(cpu.cores_by_process.get("postgres"), Some(&0.5));
        assert_eq!(cpu.cores_by_process.get("beam.smp"), Some(&0.25));
        assert_eq!(cpu.cores_by_process.get("chargegrid"), Some(&0.15));
        assert!(!cpu.cores_by_process.contains_key("gone"));
    }
}

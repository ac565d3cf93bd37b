//! The `loadtest` binary: parses flags, runs the scenario on a multi-threaded runtime, prints
//! the summary, writes the JSON report (and plots with the `plots` feature).

use std::process::ExitCode;

use chargegrid_loadtest::{run, Progress};
use clap::Parser;

mod cli;

/// mimalloc, as the server: the simulator shares the cores it measures.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// File descriptors kept free for everything that is not a charger socket.
const SPARE_FDS: u64 = 64;

/// The soft `ulimit -n` of this process, from /proc (Linux); `None` elsewhere.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let scenario = match cli.scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.print_scenario {
        match toml::to_string_pretty(&scenario) {
            Ok(text) => print!("{text}"),
            Err(e) => eprintln!("loadtest: {e}"),
        }
        return ExitCode::SUCCESS;
    }
    if let Some(limit) = open_file_limit() {
        if u64::from(scenario.chargers) + SPARE_FDS > limit {
            eprintln!(
                "loadtest: warning: {} chargers need more file descriptors than `ulimit -n` ({limit}) allows; raise it or split the chargers over several processes (--first-index, --source-ips)",
                scenario.chargers
            );
        }
    }
    #[cfg(not(feature = "plots"))]
    if cli.plots.is_some() {
        eprintln!("loadtest: --plots needs a build with `--features plots`");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let progress = if cli.quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    let report = match runtime.block_on(run(scenario, progress)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.summary());
    if let Some(path) = &cli.report {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("loadtest: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    #[cfg(feature = "plots")]
    if let Some(dir) = &cli.plots {
        if let Err(e) = chargegrid_loadtest::plots::write(&report, dir) {
            eprintln!("loadtest: plots: {e}");
            return ExitCode::FAILURE;
        }
    }
    let clean = report.failed_connections() == 0
        && report.protocol_errors.total == 0
        && report.call_timeouts == 0
        && report.sessions.failed == 0;
    if cli.check && !clean {
        eprintln!("loadtest: --check: the run had failures (see above)");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

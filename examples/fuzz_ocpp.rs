//! Fuzzes what chargers send: the OCPP-J frame parser and the decoding and validation of every
//! charger-initiated action of OCPP 1.6 and 2.0.1 (meter arithmetic included), with generated
//! and mutated frames from a seeded generator (stable toolchain; no nightly fuzzer needed).
//!
//! ```text
//! cargo run --release --example fuzz_ocpp -- [--inputs 10000000] [--seed 1] [--threads 2]
//! ```
//!
//! Every input must end as the spec says: answered (a CALLRESULT or the right CALLERROR) when
//! it has a readable message id, dropped otherwise; a panic is counted and the command exits 1.
//! The socket-level part (frames over a real connection, the socket staying up) is the test
//! `fuzz::mutated_frames_over_a_socket_are_answered_and_the_socket_survives`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use chargegrid::ocpp::fuzz::{check_frame, input, Verdict};
use chargegrid::ocpp::OcppVersion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const MAX_FRAME_BYTES: usize = 64 * 1024;

struct Tally {
    outcomes: BTreeMap<String, u64>,
    panics: u64,
    inconsistent: u64,
}

fn run(seed: u64, inputs: u64) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally {
        outcomes: BTreeMap::new(),
        panics: 0,
        inconsistent: 0,
    };
    for _ in 0..inputs {
        let version = &[OcppVersion::V16, OcppVersion::V201][rng.gen_range(0..2)];
        let text = input(*version, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| {
            check_frame(*version, &text, MAX_FRAME_BYTES)
        })) {
            Ok(verdict) => {
                // a well-formed CALL (valid JSON, type 2, a message id of 1-36 characters) is
                // always answered, never dropped
                let is_call = serde_json::from_str::<Value>(&text).ok().is_some_and(|v| {
                    v.get(0).and_then(Value::as_u64) == Some(2)
                        && v.get(1)
                            .and_then(Value::as_str)
                            .is_some_and(|id| (1..=36).contains(&id.len()))
                });
                let label = match &verdict {
                    Verdict::Answered(code) => format!("{version:?} answered {code}"),
                    Verdict::Dropped(_) if is_call => {
                        tally.inconsistent += 1;
                        format!("{version:?} dropped a CALL")
                    }
                    Verdict::Reply => format!("{version:?} reply (matched or dropped)"),
                    Verdict::Dropped(_) => format!("{version:?} dropped (no readable id)"),
                };
                *tally.outcomes.entry(label).or_default() += 1;
            }
            Err(_) => {
                tally.panics += 1;
                eprintln!("PANIC on input: {text}");
            }
        }
    }
    tally
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let inputs = arg("--inputs", 10_000_000);
    let seed = arg("--seed", 1);
    let threads = arg("--threads", 2).max(1);
    // a panic is reported by the count, not by a backtrace per input
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let share = inputs / threads + u64::from(t < inputs % threads);
            std::thread::spawn(move || run(seed.wrapping_mul(1_000_003).wrapping_add(t), share))
        })
        .collect();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let (mut panics, mut inconsistent) = (0, 0);
    for worker in workers {
        let Ok(tally) = worker.join() else {
            panics += 1;
            continue;
        };
        for (k, v) in tally.outcomes {
            *outcomes.entry(k).or_default() += v;
        }
        panics += tally.panics;
        inconsistent += tally.inconsistent;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("fuzz_ocpp: {inputs} inputs, seed {seed}, {threads} threads, {elapsed:.1} s ({:.0} inputs/s)", inputs as f64 / elapsed);
    for (outcome, n) in &outcomes {
        println!("  {n:>10}  {outcome}");
    }
    println!("panics: {panics}");
    println!("well-formed CALLs left unanswered: {inconsistent}");
    if panics > 0 || inconsistent > 0 {
        std::process::exit(1);
    }
}

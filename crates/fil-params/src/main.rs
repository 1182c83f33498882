//! `fil-params`: generate or check the local (insecure, test-only) 2KiB proof parameters.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use fil_params::{ParamSet, Progress};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    version,
    about = "Generate Groth16 parameters for 2KiB test sectors (INSECURE: testing only)",
    long_about = "Generates Groth16 parameters for 2KiB test sectors into \
FIL_PROOFS_PARAMETER_CACHE (default: $HOME/.cache/damocles/filecoin-proof-parameters).\n\n\
The parameters are derived from a fixed, public seed so every machine of a devnet \
derives the same files. Anyone can forge proofs against them: never use them \
with real sectors or on mainnet."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate the missing sets (all by default). Takes ~19 min and 5 GiB RAM on 2 cores.
    Generate {
        /// Sets to generate: window-post-2KiB, winning-post-2KiB, snap-update-2KiB, porep-2KiB.
        #[arg(long = "set", value_name = "NAME")]
        sets: Vec<String>,
    },
    /// Print which sets are present; exits 1 if any is missing.
    Check,
}

/// A spinner on a terminal; plain lines, with a reminder every minute, in logs
/// (CI), where a spinner would print nothing for twenty minutes.
struct Bar {
    spinner: Option<ProgressBar>,
    ticker: Option<Arc<AtomicBool>>,
}

impl Progress for Bar {
    fn start(&mut self, set: ParamSet, index: usize, total: usize) {
        if !std::io::stderr().is_terminal() {
            eprintln!(
                "[{index}/{total}] generating {} (about {} on 2 cores)",
                set.name(),
                human(set.expected_duration())
            );
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let started = Instant::now();
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_secs(60));
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                eprintln!(
                    "    still generating {} ({} so far)",
                    set.name(),
                    human(started.elapsed())
                );
            });
            self.ticker = Some(stop);
            return;
        }
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("static template"),
        );
        pb.set_message(format!(
            "[{index}/{total}] generating {} (about {} on 2 cores)",
            set.name(),
            human(set.expected_duration())
        ));
        pb.enable_steady_tick(Duration::from_millis(500));
        self.spinner = Some(pb);
    }
    fn finish(&mut self, set: ParamSet, elapsed: Duration) {
        let msg = format!("{} generated in {}", set.name(), human(elapsed));
        if let Some(stop) = self.ticker.take() {
            stop.store(true, Ordering::Relaxed);
        }
        match self.spinner.take() {
            Some(pb) => pb.finish_with_message(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn skip(&mut self, set: ParamSet) {
        eprintln!("{} already present", set.name());
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Errors print as one line with their causes (no backtrace noise).
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let dir = fil_params::configure_process_env();
    match cli.cmd {
        Cmd::Generate { sets } => {
            let sets = if sets.is_empty() {
                ParamSet::ALL.to_vec()
            } else {
                sets.iter()
                    .map(|n| {
                        ParamSet::from_name(n).ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown parameter set {n:?}; known: {}",
                                ParamSet::ALL.map(|s| s.name()).join(", ")
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            eprintln!(
                "WARNING: these parameters come from a public seed and are INSECURE; \
                 use them for tests and devnets only.\nparameter cache: {}",
                dir.display()
            );
            fil_params::ensure(
                &sets,
                &mut Bar {
                    spinner: None,
                    ticker: None,
                },
            )?;
        }
        Cmd::Check => {
            let mut missing = 0;
            for set in ParamSet::ALL {
                let ok = fil_params::is_present(&dir, set)?;
                println!(
                    "{:<20} {}",
                    set.name(),
                    if ok { "present" } else { "missing" }
                );
                missing += usize::from(!ok);
            }
            if missing > 0 {
                bail!("{missing} parameter set(s) missing in {}", dir.display());
            }
        }
    }
    Ok(())
}

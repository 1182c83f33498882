//! A `c2` ext-processor that wraps the builtin prover and adds what an SP wants
//! from an outsourced or custom prover: it logs how long each proof took and
//! checks the proof with `verify_seal` before answering, so a bad proof (a faulty
//! GPU, a broken build) is caught here instead of costing a rejected message.

use std::time::Instant;

use anyhow::Context;
use filecoin_proofs_api::seal::verify_seal;
use vc_processors::builtin::BuiltinProcessor;
use vc_processors::tasks::{SealCommitPhase2Output, C2};
use vc_processors::{run_consumer, Ctx, Processor};

struct VerifiedC2;

impl Processor<C2> for VerifiedC2 {
    fn process(&self, task: C2, ctx: &Ctx) -> anyhow::Result<SealCommitPhase2Output> {
        let c1 = task.c1out.clone();
        let (prover_id, sector_id) = (task.prover_id, task.sector_id);
        let started = Instant::now();
        ctx.progress(1, 2, Some("proving"));
        let out = BuiltinProcessor::default().process(task, ctx)?;
        let proved = started.elapsed();
        ctx.progress(2, 2, Some("verifying"));
        let ok = verify_seal(
            c1.registered_proof,
            c1.comm_r,
            c1.comm_d,
            prover_id,
            sector_id,
            c1.ticket,
            c1.seed,
            &out.proof,
        )
        .context("verify the new proof")?;
        if !ok {
            // Most likely faulty hardware or a broken build: another try (or
            // another prover) may well succeed.
            return Err(vc_processors::error::retryable(anyhow::anyhow!(
                "the proof for sector {} does not verify; not returning it",
                u64::from(sector_id)
            )));
        }
        tracing::info!(sector = u64::from(sector_id), ?proved, verified_in = ?started.elapsed() - proved, "c2 proof verified");
        Ok(out)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    fil_params::configure_process_env();
    run_consumer(VerifiedC2)
}

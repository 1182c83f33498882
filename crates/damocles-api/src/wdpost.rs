//! Window PoSt jobs for worker-provers (`daemon run --worker-prover`): the
//! manager queues one job per partition batch, workers with `plan = "wdpost"`
//! allocate, heartbeat and finish them. Shapes are damocles' (`Venus.WdPoSt*`):
//! PascalCase keys except the output's `proofs` / `faults`, commitments and
//! seeds as arrays of 32 numbers, proofs as base64, proof types by name.

use jsonrpsee::core::RpcResult;
use jsonrpsee::proc_macros::rpc;
use serde::{Deserialize, Serialize};

use crate::encoding::Base64Bytes;

/// What a worker may take (`WdPoStAllocateJobs`); an empty or `null` list
/// means any.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocateWdPoStJobSpec {
    /// Miner actor ids.
    pub allowed_miners: Option<Vec<u64>>,
    /// PoSt proof type names (`StackedDrgWindow2KiBV1_2`, ...).
    pub allowed_proof_types: Option<Vec<String>>,
}

/// Persist-store names (not paths) holding a sector's files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SectorAccessStores {
    /// The store of the sealed (or updated) file.
    pub sealed_file: String,
    /// The store of the cache directory.
    pub cache_dir: String,
}

/// One sector of a job, in the order the proof takes them (a skipped sector
/// appears as a duplicate of a good one, as damocles sends them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WdPoStSectorInfo {
    /// The sector number.
    pub sector_id: u64,
    /// Its replica commitment.
    pub comm_r: [u8; 32],
    /// Whether the files are the snap-upgraded ones.
    pub upgrade: bool,
    /// Where its files are.
    pub accesses: SectorAccessStores,
}

/// Everything a worker needs to prove a job. Field order is Go's: the job id
/// hashes this struct's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WdPoStInput {
    /// The sectors.
    pub sectors: Vec<WdPoStSectorInfo>,
    /// The miner actor id.
    pub miner_id: u64,
    /// The window PoSt proof type's name (`StackedDrgWindow2KiBV1_2`).
    pub proof_type: String,
    /// The challenge seed, last byte masked as the proofs want it.
    pub seed: [u8; 32],
}

impl WdPoStInput {
    /// damocles' job id: base58 (Bitcoin alphabet) of the little-endian
    /// xxh64 (seed 0) of the input's compact JSON. The same input always
    /// gives the same id, so a poster re-attaches to its job after a retry.
    pub fn job_id(&self) -> String {
        let json = serde_json::to_vec(self).expect("the input serializes");
        job_id_of(&json)
    }
}

fn job_id_of(bytes: &[u8]) -> String {
    let hash = xxhash_rust::xxh64::xxh64(bytes, 0);
    bs58::encode(hash.to_le_bytes()).into_string()
}

/// A job handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WdPoStAllocatedJob {
    /// The job id.
    pub id: String,
    /// What to prove.
    pub input: WdPoStInput,
}

/// A window PoSt result (the `window_post` stage's output): lowercase keys;
/// `null` lists read as empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPoStOutput {
    /// One proof per partition.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub proofs: Vec<Base64Bytes>,
    /// Sectors the prover could not read.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub faults: Vec<u64>,
}

fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for a worker.
    #[serde(rename = "ready2run")]
    ReadyToRun,
    /// A worker has it and sends heartbeats.
    #[serde(rename = "running")]
    Running,
    /// Done, with an output or an error.
    #[serde(rename = "finished")]
    Finished,
}

/// A job as the manager keeps it. Times are unix seconds, 0 when unset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WdPoStJob {
    /// The id ([`WdPoStInput::job_id`]).
    pub id: String,
    /// Where it is.
    pub state: JobState,
    /// The deadline it proves.
    pub deadline_idx: u64,
    /// The partitions it proves.
    pub partitions: Vec<u64>,
    /// What to prove.
    pub input: WdPoStInput,
    /// The result, once finished without an error.
    pub output: Option<WindowPoStOutput>,
    /// Times a worker took it.
    pub try_num: u32,
    /// Why it failed; empty when it did not.
    pub error_reason: String,
    /// The last worker that took it.
    pub worker_name: String,
    /// When a worker took it.
    pub started_at: u64,
    /// The last heartbeat.
    pub heartbeat_at: u64,
    /// When it finished.
    pub finished_at: u64,
    /// When it was queued (or reset).
    pub created_at: u64,
    /// The last change.
    pub updated_at: u64,
}

/// A job in `WdPoStAllJobs`: without its input's sectors and seed and its
/// output's proofs, with their counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WdPoStJobBrief {
    /// The job, input and output stripped.
    #[serde(flatten)]
    pub job: WdPoStJob,
    /// Sectors of the input.
    pub sectors: u32,
    /// Faulty sectors of the output.
    pub faults: u32,
}

impl WdPoStJobBrief {
    /// The brief of `job`.
    pub fn of(mut job: WdPoStJob) -> WdPoStJobBrief {
        let sectors = job.input.sectors.len() as u32;
        let faults = job.output.as_ref().map_or(0, |o| o.faults.len()) as u32;
        job.input.sectors.clear();
        job.input.proof_type.clear();
        job.input.seed = [0; 32];
        job.output = Some(WindowPoStOutput::default());
        WdPoStJobBrief {
            job,
            sectors,
            faults,
        }
    }
}

/// Every job, newest first, and the tries after which a failed job stays failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllWdPoStJob {
    /// The jobs.
    pub jobs: Vec<WdPoStJobBrief>,
    /// `[Common.Proving.WorkerProver] JobMaxTry`.
    pub max_try: u32,
}

/// The worker-prover methods (served only with `daemon run --worker-prover`).
#[rpc(server, client, namespace = "Venus", namespace_separator = ".")]
pub trait WdPoStApi {
    /// Hands up to `num` waiting jobs matching `spec` to `worker_name`.
    #[method(name = "WdPoStAllocateJobs")]
    async fn wdpost_allocate_jobs(
        &self,
        spec: AllocateWdPoStJobSpec,
        num: u32,
        worker_name: String,
    ) -> RpcResult<Vec<WdPoStAllocatedJob>>;

    /// Keeps running jobs alive; one job not running fails the whole call.
    #[method(name = "WdPoStHeartbeatJobs")]
    async fn wdpost_heartbeat_jobs(
        &self,
        job_ids: Vec<String>,
        worker_name: String,
    ) -> RpcResult<()>;

    /// Finishes a job with its output, or with `error_reason` (non-empty).
    #[method(name = "WdPoStFinishJob")]
    async fn wdpost_finish_job(
        &self,
        job_id: String,
        output: Option<WindowPoStOutput>,
        error_reason: String,
    ) -> RpcResult<()>;

    /// Puts a job back to waiting, its tries at zero.
    #[method(name = "WdPoStResetJob")]
    async fn wdpost_reset_job(&self, job_id: String) -> RpcResult<()>;

    /// Deletes a job (an unknown id is not an error).
    #[method(name = "WdPoStRemoveJob")]
    async fn wdpost_remove_job(&self, job_id: String) -> RpcResult<()>;

    /// Every job, newest first.
    #[method(name = "WdPoStAllJobs")]
    async fn wdpost_all_jobs(&self) -> RpcResult<AllWdPoStJob>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_damocles_ids() {
        // xxh64("") = 0xEF46DB3751D8E999, little-endian, base58.
        assert_eq!(job_id_of(b""), "Sk9tp34Z1dQ");
        let input = WdPoStInput {
            sectors: vec![WdPoStSectorInfo {
                sector_id: 1,
                comm_r: [3; 32],
                upgrade: false,
                accesses: SectorAccessStores {
                    sealed_file: "store-1".into(),
                    cache_dir: "store-1".into(),
                },
            }],
            miner_id: 1000,
            proof_type: "StackedDrgWindow2KiBV1_2".into(),
            seed: [7; 32],
        };
        let json = serde_json::to_string(&input).unwrap();
        assert!(
            json.starts_with(r#"{"Sectors":[{"SectorId":1,"CommR":[3,"#)
                && json.contains(r#""Upgrade":false,"Accesses":{"SealedFile":"store-1","CacheDir":"store-1"}}],"MinerId":1000,"ProofType":"StackedDrgWindow2KiBV1_2","Seed":[7,"#),
            "{json}"
        );
        assert_eq!(input.job_id(), job_id_of(json.as_bytes()));
        let mut other = input.clone();
        other.seed[0] = 8;
        assert_ne!(input.job_id(), other.job_id());
    }

    #[test]
    fn outputs_read_null_lists_as_empty() {
        let o: WindowPoStOutput = serde_json::from_str(r#"{"proofs":null,"faults":null}"#).unwrap();
        assert_eq!(o, WindowPoStOutput::default());
        let o: WindowPoStOutput =
            serde_json::from_str(r#"{"proofs":["AQI="],"faults":[4]}"#).unwrap();
        assert_eq!(o.proofs[0].0, vec![1, 2]);
        assert_eq!(o.faults, vec![4]);
        let spec: AllocateWdPoStJobSpec = serde_json::from_str(
            r#"{"AllowedMiners":null,"AllowedProofTypes":["StackedDrgWindow2KiBV1_2"]}"#,
        )
        .unwrap();
        assert_eq!(spec.allowed_miners, None);
    }
}

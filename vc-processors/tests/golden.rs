//! The wire format is a contract: every golden file (the exact JSON of a task or
//! an output, taken from a real sealing run where one exists) must decode into
//! its real type and encode back to the same bytes.
//!
//! Regenerate the files from a real run with
//! `UPDATE_GOLDEN=1 cargo test -p damocles-e2e --test seal_through_ext_processors`.

use serde::{de::DeserializeOwned, Serialize};
use vc_processors::tasks::{self, *};
use vc_processors::Task;

fn golden(name: &str) -> String {
    let path = manifest_dir().join("tests/golden").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn round_trip<V: Serialize + DeserializeOwned>(name: &str) {
    let text = golden(name);
    let wire = text.strip_suffix('\n').unwrap_or(&text);
    let value: V =
        serde_json::from_str(wire).unwrap_or_else(|e| panic!("{name} does not decode: {e}"));
    let again = serde_json::to_string(&value).unwrap();
    assert!(again == wire, "{name} does not round-trip byte for byte");
}

fn stage<T: Task>() {
    round_trip::<T>(&format!("{}.task.json", T::STAGE));
    round_trip::<T::Output>(&format!("{}.output.json", T::STAGE));
}

#[test]
fn every_stage_round_trips_byte_for_byte() {
    stage::<AddPieces>();
    stage::<TreeD>();
    stage::<PC1>();
    stage::<PC2>();
    stage::<C2>();
    stage::<SnapEncode>();
    stage::<SnapProve>();
    stage::<Transfer>();
    stage::<WindowPoSt>();
    stage::<WinningPoSt>();
    stage::<PoStVanilla>();
    stage::<PoStSnark>();
    stage::<Unseal>();
}

#[test]
fn every_external_stage_has_golden_files() {
    for s in tasks::Stage::ALL.iter().filter(|s| s.has_task()) {
        golden(&format!("{s}.task.json"));
        golden(&format!("{s}.output.json"));
    }
}

#[test]
fn wire_encodings_follow_damocles() {
    // Proof types as variant names, 32-byte values as integer arrays, PoSt proofs
    // as base64 strings, other byte vectors as integer arrays.
    let pc1 = golden("pc1.task.json");
    assert!(pc1.contains(r#""registered_proof":"StackedDrg2KiBV1_1""#));
    assert!(pc1.contains(r#""ticket":[7,7,7,"#));
    assert!(pc1.contains(r#""sector_id":7,"#));
    let post = golden("window_post.output.json");
    assert!(post.starts_with(r#"{"proofs":[""#), "{post}");
    assert!(golden("window_post.task.json").contains(r#""proof_type":"StackedDrgWindow2KiBV1_2""#));
    assert!(golden("c2.output.json").starts_with(r#"{"proof":["#));
    assert!(golden("add_pieces.task.json").contains(r#""piece_file":{"local":"#));
    assert!(golden("snap_prove.task.json").contains(r#""vannilla_proofs":"#));
}

/// The package directory, read at run time (cargo sets it for tests too): a
/// test binary built from another checkout sharing the build directory would
/// carry that checkout's path in `env!`.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

//! PoSt configuration mistakes stop `daemon run` before it serves, with an
//! error naming the entry or the keys: an `ext-prover.cfg` with an unknown
//! key, a missing binary or a child with a wrong ready line, and window PoSt
//! confidences that cannot fit the devnet's deadline window. No proofs.

use std::path::Path;

use damocles_e2e::manager::{manager_bin, start_fails};
use damocles_e2e::post::{init_post_home, set_key, toml_string};

const DOUBLE: &str = env!("CARGO_BIN_EXE_test-double-processor");

/// A home whose `ext-prover.cfg` is `cfg`; the error of `--ext-prover`.
fn ext_prover_start_error(dir: &Path, cfg: &str) -> String {
    let home = dir.join("home");
    init_post_home(&home, "1s", 0, &["DeadlinesPerPeriod=4"], |t| t);
    std::fs::write(home.join("ext-prover.cfg"), cfg).unwrap();
    start_fails(&home, &["--poster", "--ext-prover"])
}

#[test]
fn an_unknown_key_in_ext_prover_cfg_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let e = ext_prover_start_error(
        dir.path(),
        &format!(
            "[[WdPost]]\nBin = {}\n\n[[WinPost]]\nBin = {}\nConcurent = 2\n",
            toml_string(DOUBLE),
            toml_string(DOUBLE)
        ),
    );
    assert!(
        e.contains("ext-prover.cfg") && e.contains("WinPost.0.Concurent"),
        "{e}"
    );
}

#[test]
fn a_missing_ext_prover_binary_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let e = ext_prover_start_error(
        dir.path(),
        &format!(
            "[[WdPost]]\nBin = {}\nArgs = [\"post\", \"window_post\"]\n\n[[WdPost]]\nBin = \"/no/such/prover\"\n",
            toml_string(DOUBLE)
        ),
    );
    assert!(
        e.contains("WdPost[1].Bin") && e.contains("/no/such/prover"),
        "{e}"
    );
}

#[test]
fn an_ext_prover_with_a_wrong_ready_line_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let e = ext_prover_start_error(
        dir.path(),
        &format!(
            "[[WdPost]]\nBin = {}\nArgs = [\"wrong-ready\"]\nReadyTimeoutSecs = 5\n",
            toml_string(DOUBLE)
        ),
    );
    assert!(
        e.contains("ext-prover.cfg: WdPost[0]") && e.contains("ready"),
        "{e}"
    );
}

#[test]
fn confidences_that_cannot_fit_a_deadline_are_refused_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init_post_home(&home, "1s", 0, &["DeadlinesPerPeriod=4"], |t| {
        set_key(&t, "[Miners.PoSt]", "SubmitConfidence", "25")
    });
    let e = start_fails(&home, &["--poster"]);
    assert!(
        e.contains("Miners[0].PoSt.SubmitConfidence (25)")
            && e.contains("Devnet.Policy.ChallengeWindow"),
        "{e}"
    );

    // Caught as early as `daemon init`, which writes no config that does
    // not load.
    let home = dir.path().join("few-deadlines");
    let out = std::process::Command::new(manager_bin())
        .arg("--home")
        .arg(&home)
        .args(["daemon", "init", "--miner", "1000", "--block-time", "1s"])
        .args(["--policy", "DeadlinesPerPeriod=3"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("Miners[0].PoSt.Enabled") && e.contains("DeadlinesPerPeriod (3)"),
        "{e}"
    );
    assert!(!home.join("sector-manager.cfg").exists());
}

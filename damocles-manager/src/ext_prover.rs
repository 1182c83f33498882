//! `ext-prover.cfg`: the window and winning PoSt provers the manager runs as
//! child processes (`daemon run --ext-prover`), damocles' file and keys:
//!
//! ```toml
//! [[WdPost]]
//! Bin = "/usr/local/bin/gpu-prover"   # unset: damocles-worker beside the manager
//! Args = ["--device", "0"]             # used as given when Bin is set
//! Envs = { CUDA_VISIBLE_DEVICES = "0" }
//! Concurrent = 1                       # requests in flight per child (0 means 1)
//! Weight = 1                           # share of the requests among free children (0 means 1)
//! ReadyTimeoutSecs = 5                 # wait for the ready line (0 means 5)
//!
//! [[WinPost]]
//!
//! [[PostSnark]]                        # the SNARK half of both kinds (see below)
//! ```
//!
//! `[[PostSnark]]` children (no Bin: `damocles-worker processor post_snark`)
//! split a PoSt: the manager computes the vanilla proofs, near the sector
//! files, and a child turns them into the SNARK, reading no sector file. A
//! kind with its own `[[WdPost]]` / `[[WinPost]]` entries uses those.
//!
//! Unlike damocles, a key this file does not know stops the daemon, naming
//! it: a misspelt `Concurent` would otherwise silently run one request at a
//! time on a GPU meant for four.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The file name in the manager's home.
pub const FILE_NAME: &str = "ext-prover.cfg";

/// The whole file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExtProvers {
    /// Window PoSt provers.
    pub wd_post: Vec<ExtProverEntry>,
    /// Winning PoSt provers.
    pub win_post: Vec<ExtProverEntry>,
    /// SNARK-only provers of a split PoSt (either kind).
    pub post_snark: Vec<ExtProverEntry>,
}

/// One child process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExtProverEntry {
    pub bin: Option<PathBuf>,
    pub args: Vec<String>,
    pub envs: BTreeMap<String, String>,
    pub concurrent: u32,
    pub weight: u32,
    pub ready_timeout_secs: u64,
}

/// Which PoSt a prover serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoStKind {
    Window,
    Winning,
    /// The SNARK half of a split PoSt of either kind.
    Snark,
}

impl PoStKind {
    /// The section name in the file.
    pub fn section(self) -> &'static str {
        match self {
            PoStKind::Window => "WdPost",
            PoStKind::Winning => "WinPost",
            PoStKind::Snark => "PostSnark",
        }
    }

    /// The processor stage name (`damocles-worker processor <stage>`).
    pub fn stage(self) -> &'static str {
        match self {
            PoStKind::Window => damocles_sector::Stage::WindowPost.as_str(),
            PoStKind::Winning => damocles_sector::Stage::WinningPost.as_str(),
            PoStKind::Snark => damocles_sector::Stage::PostSnark.as_str(),
        }
    }
}

/// An entry with damocles' defaults applied and its command resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProverCommand {
    pub bin: PathBuf,
    pub args: Vec<String>,
    pub envs: BTreeMap<String, String>,
    pub concurrent: u32,
    pub weight: u32,
    pub ready_timeout: Duration,
}

impl ExtProverEntry {
    /// Applies the defaults (0 means the default, as in damocles); without a
    /// `Bin`, `damocles-worker processor <stage>` from `default_dir`.
    pub fn resolve(&self, kind: PoStKind, default_dir: &Path) -> ProverCommand {
        let (bin, args) = match &self.bin {
            Some(bin) => (bin.clone(), self.args.clone()),
            None => (
                default_dir.join("damocles-worker"),
                vec!["processor".into(), kind.stage().into()],
            ),
        };
        ProverCommand {
            bin,
            args,
            envs: self.envs.clone(),
            concurrent: self.concurrent.max(1),
            weight: self.weight.max(1),
            ready_timeout: Duration::from_secs(match self.ready_timeout_secs {
                0 => 5,
                s => s,
            }),
        }
    }
}

impl ExtProvers {
    /// Parses `text`; an unknown key is an error naming it.
    pub fn parse(text: &str) -> Result<ExtProvers> {
        let loaded = damocles_config::parse::<ExtProvers>(text)?;
        if let Some(key) = loaded.unknown_keys.first() {
            bail!("key {key}: not a key of {FILE_NAME} (Bin, Args, Envs, Concurrent, Weight, ReadyTimeoutSecs under [[WdPost]], [[WinPost]] or [[PostSnark]])");
        }
        Ok(loaded.config)
    }

    /// Reads `path` and resolves every entry against `default_dir`; each
    /// refusal names the file and the entry.
    pub fn load(path: &Path, default_dir: &Path) -> Result<Vec<(PoStKind, ProverCommand)>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("read {}: {e} (`--ext-prover` needs it)", path.display())
        })?;
        let provers =
            ExtProvers::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        let mut out = Vec::new();
        for (kind, entries) in [
            (PoStKind::Window, &provers.wd_post),
            (PoStKind::Winning, &provers.win_post),
            (PoStKind::Snark, &provers.post_snark),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                let cmd = entry.resolve(kind, default_dir);
                check_executable(&cmd.bin).map_err(|why| {
                    anyhow::anyhow!("{}: {}[{i}].Bin: {why}", path.display(), kind.section())
                })?;
                out.push((kind, cmd));
            }
        }
        Ok(out)
    }
}

/// Why `bin` cannot be run, if it cannot.
fn check_executable(bin: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(bin).map_err(|e| format!("{}: {e}", bin.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", bin.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", bin.display()));
    }
    Ok(())
}

/// Picks one of the children that have a free slot, in proportion to their
/// weights: `weights[i]` is child i's weight (0 for a child with no free
/// slot), `roll` a uniformly random number. Every child with a free slot
/// can be picked, the last one included (damocles' choice never picks the
/// last free child unless it is the only one). `None` when none is free.
pub fn weighted_pick(weights: &[u32], roll: u64) -> Option<usize> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut point = roll % total;
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    unreachable!("point < total")
}

/// The file `daemon init` writes: every line commented out.
pub fn default_file() -> String {
    format!(
        "# {FILE_NAME}: PoSt provers run as child processes with `daemon run --ext-prover`.\n\
         # Without Bin, `damocles-worker processor window_post|winning_post` beside the manager.\n\
         #\n\
         # [[WdPost]]\n\
         # Bin = \"/path/to/prover\"\n\
         # Args = []\n\
         # Envs = {{}}\n\
         # Concurrent = 1\n\
         # Weight = 1\n\
         # ReadyTimeoutSecs = 5\n\
         #\n\
         # [[WinPost]]\n\
         #\n\
         # The SNARK half only (no Bin: `damocles-worker processor post_snark`): the\n\
         # manager computes the vanilla proofs; a kind with no entry of its own above\n\
         # then runs split.\n\
         # [[PostSnark]]\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_damocles_keys() {
        let p = ExtProvers::parse(
            "[[WdPost]]\nConcurrent = 0\nWeight = 3\n[[WdPost]]\nBin = \"/bin/true\"\nArgs = [\"x\"]\nEnvs = { A = \"b\" }\nReadyTimeoutSecs = 9\n[[WinPost]]\n",
        )
        .unwrap();
        let dir = Path::new("/opt/damocles");
        let a = p.wd_post[0].resolve(PoStKind::Window, dir);
        assert_eq!(a.bin, dir.join("damocles-worker"));
        assert_eq!(a.args, ["processor", "window_post"]);
        assert_eq!((a.concurrent, a.weight), (1, 3));
        assert_eq!(a.ready_timeout, Duration::from_secs(5));
        let b = p.wd_post[1].resolve(PoStKind::Window, dir);
        assert_eq!(
            (b.bin.as_path(), b.args.as_slice()),
            (Path::new("/bin/true"), &["x".to_string()][..])
        );
        assert_eq!(b.envs["A"], "b");
        assert_eq!(b.ready_timeout, Duration::from_secs(9));
        let w = p.win_post[0].resolve(PoStKind::Winning, dir);
        assert_eq!(w.args, ["processor", "winning_post"]);
        assert!(ExtProvers::parse(&default_file())
            .unwrap()
            .wd_post
            .is_empty());
    }

    #[test]
    fn unknown_keys_and_missing_binaries_name_the_entry() {
        let e = ExtProvers::parse("[[WdPost]]\nConcurent = 4\n").unwrap_err();
        assert!(e.to_string().contains("WdPost.0.Concurent"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join(FILE_NAME);
        std::fs::write(
            &cfg,
            "[[WinPost]]\nBin = \"/bin/true\"\n[[WinPost]]\nBin = \"/no/such/prover\"\n",
        )
        .unwrap();
        let e = ExtProvers::load(&cfg, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("WinPost[1].Bin") && e.contains("/no/such/prover"),
            "{e}"
        );
        std::fs::write(&cfg, "[[WdPost]]\n").unwrap();
        let e = ExtProvers::load(&cfg, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("WdPost[0].Bin") && e.contains("damocles-worker"),
            "{e}"
        );
    }

    #[test]
    fn the_weighted_pick_reaches_every_free_child_in_proportion() {
        assert_eq!(weighted_pick(&[0, 0], 7), None);
        assert_eq!(weighted_pick(&[], 7), None);
        // Two free children of equal weight: both are picked (damocles'
        // choice always took the first).
        let mut counts = [0u32; 3];
        for roll in 0..6000u64 {
            counts[weighted_pick(&[1, 0, 1], roll).unwrap()] += 1;
        }
        assert_eq!(counts, [3000, 0, 3000]);
        let mut counts = [0u32; 3];
        for roll in 0..6000u64 {
            counts[weighted_pick(&[1, 2, 3], roll).unwrap()] += 1;
        }
        assert_eq!(counts, [1000, 2000, 3000]);
    }
}

//! CPU and memory placement of processor processes: cgroup v2 cpusets where the
//! system permits, CPU affinity where it does not, and a NUMA memory preference.
//!
//! The producer applies placement to each child between `fork` and `exec`, so it
//! holds from the child's first instruction and is re-applied on every restart,
//! whatever language the child is written in. For compatibility with damocles'
//! parents, a consumer also applies the placement named in its environment.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Env var: the cgroup a damocles parent wants its child in.
pub const CG_NAME_ENV: &str = "VC_CG_NAME";
/// Env var: the cpuset for that cgroup, e.g. `0-3,8`.
pub const CG_CPUSET_ENV: &str = "VC_CG_CPUSET";
/// Env var: the preferred NUMA node.
pub const NUMA_PREFERRED_ENV: &str = "VENUS_WORKER_NUMA_PREFERRED";

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Parses a cpuset list such as `0-3,8,10-11` into CPU indices.
pub fn parse_cpuset(spec: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim()
                        .parse()
                        .with_context(|| format!("bad cpu {a:?} in cpuset {spec:?}"))?,
                    b.trim()
                        .parse()
                        .with_context(|| format!("bad cpu {b:?} in cpuset {spec:?}"))?,
                );
                if a > b {
                    bail!("bad range {part:?} in cpuset {spec:?}: start after end");
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(
                part.parse()
                    .with_context(|| format!("bad cpu {part:?} in cpuset {spec:?}"))?,
            ),
        }
    }
    if cpus.is_empty() {
        bail!("cpuset {spec:?} names no cpu");
    }
    if let Some(max) = cpus.iter().max() {
        if *max >= libc::CPU_SETSIZE as usize {
            bail!("cpu {max} in cpuset {spec:?} is out of range");
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Where a child process should run. Prepared in the parent (file system work),
/// then applied in the forked child by [`PreparedPlacement::apply_in_child`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// CPUs the child may use.
    pub cpuset: Option<String>,
    /// cgroup path below `/sys/fs/cgroup` to create for the child.
    pub cgroup: Option<String>,
    /// Preferred NUMA node for the child's memory.
    pub numa_preferred: Option<u32>,
}

/// A placement with its cgroup made and its masks computed: nothing left that
/// allocates, so it can run between fork and exec.
#[derive(Debug)]
pub struct PreparedPlacement {
    cgroup_procs: Option<CString>,
    cpus: Option<libc::cpu_set_t>,
    numa_mask: Option<[libc::c_ulong; 16]>,
}

impl Placement {
    /// True when there is nothing to apply: no CPU set and no NUMA node
    /// (a cgroup without a CPU set is not used).
    pub fn is_empty(&self) -> bool {
        self.cpuset.is_none() && self.numa_preferred.is_none()
    }

    /// Makes the cgroup (if permitted) and computes the masks. A cgroup that cannot
    /// be made is a warning: the CPU affinity still confines the child.
    pub fn prepare(&self) -> Result<PreparedPlacement> {
        let mut prepared = PreparedPlacement {
            cgroup_procs: None,
            cpus: None,
            numa_mask: None,
        };
        if let Some(spec) = &self.cpuset {
            let cpus = parse_cpuset(spec)?;
            // SAFETY: cpu_set_t is plain data; zeroed is the empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for cpu in &cpus {
                // SAFETY: cpu < CPU_SETSIZE, checked by parse_cpuset.
                unsafe { libc::CPU_SET(*cpu, &mut set) };
            }
            prepared.cpus = Some(set);
            if let Some(name) = &self.cgroup {
                match make_cgroup(Path::new(CGROUP_ROOT), name, spec) {
                    Ok(procs) => {
                        prepared.cgroup_procs = Some(
                            CString::new(procs.as_os_str().as_encoded_bytes())
                                .context("cgroup path holds a NUL byte")?,
                        )
                    }
                    Err(e) => tracing::warn!(
                        cgroup = %name,
                        cpuset = %spec,
                        "cannot use a cgroup v2 cpuset ({e:#}); confining the processor with CPU affinity instead"
                    ),
                }
            }
        }
        if let Some(node) = self.numa_preferred {
            if node as usize >= 16 * 64 {
                bail!("NUMA node {node} is out of range");
            }
            let mut mask = [0 as libc::c_ulong; 16];
            mask[node as usize / 64] |= 1 << (node % 64);
            prepared.numa_mask = Some(mask);
        }
        Ok(prepared)
    }
}

impl PreparedPlacement {
    /// Applies the placement to the calling process. Only system calls on
    /// pre-computed data: safe to run in a forked child before `exec`.
    pub fn apply_in_child(&self) -> std::io::Result<()> {
        if let Some(procs) = &self.cgroup_procs {
            // Writing "0" to cgroup.procs moves the writer itself. Failure is not
            // fatal: the affinity below still applies.
            // SAFETY: valid NUL-terminated path; plain syscalls.
            unsafe {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                }
            }
        }
        if let Some(set) = &self.cpus {
            // SAFETY: set is a valid cpu_set_t.
            if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) }
                != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(mask) = &self.numa_mask {
            const MPOL_PREFERRED: libc::c_long = 1;
            // SAFETY: mask outlives the call; maxnode is its size in bits.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_set_mempolicy,
                    MPOL_PREFERRED,
                    mask.as_ptr(),
                    (mask.len() * 64) as libc::c_ulong,
                )
            };
            // A kernel without NUMA support refuses; memory placement is advisory.
            let _ = r;
        }
        Ok(())
    }
}

/// Creates `<root>/<name>` with `cpuset.cpus = spec`, enabling the cpuset
/// controller on the way down. Returns its `cgroup.procs` path.
fn make_cgroup(root: &Path, name: &str, spec: &str) -> Result<PathBuf> {
    if name.split('/').any(|c| c == ".." || c.is_empty()) {
        bail!("bad cgroup name {name:?}");
    }
    if !root.join("cgroup.controllers").exists() {
        bail!("{} is not a cgroup v2 hierarchy", root.display());
    }
    let mut dir = root.to_path_buf();
    for component in name.split('/') {
        let control = dir.join("cgroup.subtree_control");
        // Already enabled is fine; a refusal shows up when writing cpuset.cpus.
        let _ = std::fs::write(&control, "+cpuset");
        dir.push(component);
        if !dir.exists() {
            std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        }
    }
    std::fs::write(dir.join("cpuset.cpus"), spec)
        .with_context(|| format!("write cpuset.cpus in {}", dir.display()))?;
    Ok(dir.join("cgroup.procs"))
}

/// Consumer side: applies what a damocles parent put in the environment.
/// Failures are warnings: the processor still serves, unplaced.
pub fn apply_placement_from_env() {
    let placement = Placement {
        cpuset: std::env::var(CG_CPUSET_ENV).ok().filter(|s| !s.is_empty()),
        cgroup: std::env::var(CG_NAME_ENV).ok().filter(|s| !s.is_empty()),
        numa_preferred: std::env::var(NUMA_PREFERRED_ENV)
            .ok()
            .and_then(|s| s.parse().ok()),
    };
    if placement.is_empty() {
        return;
    }
    let result = placement
        .prepare()
        .and_then(|p| p.apply_in_child().map_err(Into::into));
    if let Err(e) = result {
        tracing::warn!(
            ?placement,
            "cannot apply the placement from the environment: {e:#}"
        );
    }
}

/// The CPUs the calling thread may run on.
pub fn current_affinity() -> Result<Vec<usize>> {
    // SAFETY: zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: every index is below CPU_SETSIZE; `set` is initialised.
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpusets_parse() {
        assert_eq!(
            parse_cpuset("0-3,8,10-11").unwrap(),
            vec![0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpuset(" 1 ").unwrap(), vec![1]);
        assert!(parse_cpuset("3-1").is_err());
        assert!(parse_cpuset("a").is_err());
        assert!(parse_cpuset("").is_err());
        assert!(parse_cpuset("99999").is_err());
    }
}

//! What a config will run, in words: the `config check` report.

use std::fmt::Write;
use std::path::Path;

use crate::config::{Sealing, WorkerConfig};

fn size_name(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => format!("{b}B"),
    }
}

fn list<T: std::fmt::Display>(v: &[T], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The report `config check` prints. `self_exe` is the binary that default
/// processor entries run.
pub fn describe(c: &WorkerConfig, self_exe: &Path) -> String {
    let mut out = String::new();
    let w = &mut out;
    let url = c.sector_manager.url().unwrap_or_else(|e| e.to_string());
    let auth = if c
        .sector_manager
        .headers()
        .keys()
        .any(|k| k.eq_ignore_ascii_case("authorization"))
    {
        "with a token"
    } else {
        "without a token"
    };
    let _ = writeln!(
        w,
        "worker:   {}",
        c.worker.name.as_deref().unwrap_or("(host name)")
    );
    let _ = writeln!(w, "manager:  {url} ({auth})");
    let _ = writeln!(w, "threads:  {}", c.sealing_thread.len());
    for (i, t) in c.sealing_thread.iter().enumerate() {
        let s = Sealing::resolve(&c.sealing, &t.sealing, "sealing_thread").expect("validated");
        let sizes: Vec<String> = s.allowed_sizes.iter().map(|b| size_name(*b)).collect();
        let _ = writeln!(
            w,
            "  #{i} {}  plan {}  miners [{}]  sizes [{}]  max_retries {}  recover {:?}",
            t.location.display(),
            t.plan.as_deref().unwrap_or("sealer"),
            list(&s.allowed_miners, "any"),
            list(&sizes, "any"),
            s.max_retries,
            s.recover_interval,
        );
    }
    let _ = writeln!(w, "attached stores:");
    if c.attached.is_empty() {
        let _ = writeln!(w, "  none (persisting needs one)");
    }
    for a in &c.attached {
        let _ = writeln!(
            w,
            "  {}  {}  {}",
            a.instance_name(),
            a.location.display(),
            if a.readonly {
                "read-only"
            } else {
                "read-write"
            }
        );
    }
    let limits = c.processors.concurrent_limits();
    let staggered = c.processors.staggered().unwrap_or_default();
    let _ = writeln!(w, "stages:");
    for (stage, entries) in c.processors.sections() {
        let mut limit = String::new();
        if let Some(n) = limits.get(stage) {
            let _ = write!(limit, "  at most {n} thread(s) at once");
        }
        if let Some(d) = staggered.get(stage) {
            let _ = write!(limit, "  starts {d:?} apart");
        }
        if entries.is_empty() {
            if stage != "sealing_daemons" {
                let _ = writeln!(w, "  {stage:<15} builtin, in-process{limit}");
            }
            continue;
        }
        let _ = writeln!(w, "  {stage:<15} {} ext-processor(s){limit}", entries.len());
        for e in entries {
            let (bin, args) = e.command(stage, self_exe);
            let mut extra = Vec::new();
            if let Some(n) = e.concurrent {
                extra.push(format!("concurrent {n}"));
            }
            if !e.locks.is_empty() {
                extra.push(format!("locks {}", e.locks.join("+")));
            }
            if let Some(cpuset) = e.cgroup.as_ref().and_then(|g| g.cpuset.as_deref()) {
                extra.push(format!("cpuset {cpuset}"));
            }
            if let Some(n) = e.numa_preferred {
                extra.push(format!("numa {n}"));
            }
            if let Some(t) = e.timeout {
                extra.push(format!("timeout {t:?}"));
            }
            if !e.auto_restart {
                extra.push("no restart".into());
            }
            let _ = writeln!(
                w,
                "      {} {}  {}",
                bin.display(),
                args.join(" "),
                extra.join("  ")
            );
        }
    }
    for (name, n) in &c.processors.ext_locks {
        let _ = writeln!(w, "lock {name}: {n} holder(s) at once");
    }
    out
}

//! Every example ext-processor, run for real.

use std::io::Write;
use std::process::{Command, Stdio};

use damocles_e2e::{init_logs, persist_task, workspace_bin};
use vc_processors::producer::{Producer, ProducerConfig};

#[test]
fn sqr_processor_speaks_the_protocol_by_hand() {
    let bin = workspace_bin("example-sqr-processor", "sqr-processor");
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"id\":1,\"task\":15}\n{\"id\":2,\"task\":4294967296}\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.remove(0), "sqr processor ready");
    lines.sort();
    assert_eq!(lines[0], r#"{"id":1,"err_msg":null,"output":225}"#);
    assert_eq!(
        lines[1],
        r#"{"id":2,"err_msg":"4294967296 squared overflows a u64","output":null}"#
    );
}

#[tokio::test]
async fn python_transfer_processor_serves_a_v1_parent() {
    init_logs();
    if Command::new("python3").arg("--version").output().is_err() {
        panic!("python3 is required for this test (.ci/run installs it)");
    }
    let script =
        damocles_e2e::manifest_dir().join("../examples/python-transfer/transfer_processor.py");
    let p = Producer::spawn(ProducerConfig::new(
        "transfer",
        "python3",
        vec![script.display().to_string()],
    ))
    .await
    .unwrap();
    assert!(!p.status().v2, "the Python example speaks v1 only");

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("cache");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("p_aux"), b"aux").unwrap();
    std::fs::write(dir.path().join("sealed"), b"sealed bytes").unwrap();
    let store = dir.path().join("store");
    let mut task = persist_task("s", &store, &dir.path().join("sealed"), &src, "s-t01000-1");
    // `opt: null` means a plain file copy.
    task.routes[0].opt = None;
    assert!(p.process(&task).await.unwrap());
    assert_eq!(
        std::fs::read(store.join("sealed/s-t01000-1")).unwrap(),
        b"sealed bytes"
    );
    assert_eq!(
        std::fs::read(store.join("cache/s-t01000-1/p_aux")).unwrap(),
        b"aux"
    );

    // Errors come back as err_msg naming the path, and the child keeps serving.
    let mut bad = task.clone();
    bad.routes[0].src.uri = dir.path().join("nope");
    let err = p.process(&bad).await.unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let mut escape = task.clone();
    escape.routes[0].dest.uri = "../outside".into();
    assert!(p.process(&escape).await.is_err());
    assert!(!dir.path().join("outside").exists());
    assert!(p.process(&task).await.unwrap());
    assert_eq!(p.status().restarts, 0);
}

//! Memory and records stay bounded whatever a node or a script sends: reads have a
//! limit, `get` streams to disk, stored error text honours `output_limit`.

use crate::harness::Workspace;
use crate::harness::sshd::Fleet;

fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn reads_are_bounded_and_get_streams_to_disk_over_ssh() {
    let fleet = Fleet::start(1);
    let out = fleet.shared_dir("out");
    // Sparse: 160 MiB to send, nothing to write.
    let big = out.join("big");
    std::fs::File::create(&big).unwrap().set_len(160 << 20).unwrap();
    let ws = Workspace::new(&fleet.ssh_settings("strict"), &fleet.nodes_yaml());
    ws.write(
        "tasks/site/files.rhai",
        &format!(
            "fn read_big(ssh) {{ ssh.read(\"{big}\"); }}\n\
             fn get_big(ssh) {{ ssh.get(\"{big}\", \"{copy}\"); }}\n",
            big = big.display(),
            copy = ws.path("copy").display()
        ),
    );
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  read:\n    task: site.files.read_big\n    targets: [n01]\n  get:\n    task: site.files.get_big\n    targets: [n01]\n",
    );
    let daemon = ws.serve();
    daemon.wait_started();
    let read = ws.loom(&["run", "read"]);
    read.assert_code(1);
    assert!(read.stdout.contains("larger than 64 MiB"), "{}", read.stdout);
    assert!(read.stdout.contains("ssh.get"), "{}", read.stdout);
    ws.loom(&["run", "get"]).assert_code(0);
    assert_eq!(std::fs::metadata(ws.path("copy")).unwrap().len(), 160 << 20);
    let peak = peak_kib(daemon.pid());
    assert!(peak < 120 << 10, "the daemon peaked at {peak} KiB for a 160 MiB file");
    assert_eq!(daemon.stop().0, Some(0));
}

#[test]
fn stored_error_text_honours_output_limit() {
    let ws = Workspace::local("output_limit: 2000\n");
    ws.write("tasks/site/loud.rhai", "fn fail(ssh) { let s = \"x\"; for i in 0..20 { s += s; } throw s; }\n");
    ws.write("jobs/a.yaml", "jobs:\n  loud:\n    task: site.loud.fail\n    targets: [local]\n");
    ws.loom(&["run", "loud"]).assert_code(1);
    let logs = ws.loom(&["logs", "1", "--json"]);
    let detail: serde_json::Value =
        serde_json::from_str(&logs.stdout).unwrap_or_else(|err| panic!("{err}: {}", logs.all()));
    let error = detail["results"][0]["error"].as_str().unwrap();
    assert!(error.len() < 2100, "{} bytes of error stored", error.len());
    assert!(error.ends_with("[cut: output_limit reached]"), "{error}");
    let store = std::fs::metadata(ws.path("state.db")).unwrap().len()
        + std::fs::metadata(ws.path("state.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(store < 512 << 10, "the store holds {store} bytes");
}

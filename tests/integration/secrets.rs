//! A node's password reaches sudo only when sudo asks for it: never a command's
//! input, output, the store, the log, the API or a file on the node.

use crate::harness::Workspace;
use crate::harness::sshd::{self, Fleet, KEY_USER, PASSWORD, PASSWORD_USER};

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every file under `dir`, read whole (binary files too: the store is one).
fn contents(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(contents(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path.display().to_string(), bytes));
        }
    }
    found
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_sudo_password_reaches_sudo_only_when_it_asks() {
    if !sshd::is_root() {
        eprintln!("skipped: needs the test users that only root can create");
        return;
    }
    let fleet = Fleet::start(1);
    let node = &fleet.nodes[0];
    let out = fleet.shared_dir("out");
    let fstab = out.join("fstab");
    std::fs::write(&fstab, "# fstab\n").unwrap();
    std::fs::set_permissions(&fstab, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    fleet.stand_in("mount", "exit 0");
    fleet.stand_in("mountpoint", "exit 1");
    // `nopass` has passwordless sudo but a password in its manifest; `pass` needs it.
    let nodes = format!(
        "nopass:\n  ip: {ip}\n  port: {port}\n  user: {KEY_USER}\n  identity: {key}\n  password: {pw}\n\
         pass:\n  ip: {ip}\n  port: {port}\n  user: {PASSWORD_USER}\n  password: {pw}\n  ssh_options: [PubkeyAuthentication=no]\n",
        ip = node.address,
        port = node.port,
        key = fleet.client_key.display(),
        pw = quoted(PASSWORD),
    );
    let ws = Workspace::new(&format!("datafile: data.yaml\n{}", fleet.ssh_settings("strict")), &nodes);
    ws.write(
        "data.yaml",
        &format!(
            "storage: &storage\n  host: backup\n  remotepath: /srv\n  mountpoint: {}/mnt\n  fstab: {}\n",
            out.display(),
            fstab.display()
        ),
    );
    ws.write(
        "tasks/site/sudo.rhai",
        &format!(
            "fn probe(ssh) {{\n\
               let plain = ssh.sudo(\"cat\");\n\
               let given = ssh.sudo(\"cat\", #{{ stdin: \"given input\\n\" }});\n\
               ssh.sudo(`cat > {d}/${{ssh.node}}-input`);\n\
               ssh.sudo(`env > {d}/${{ssh.node}}-env; id -un > {d}/${{ssh.node}}-who`);\n\
               ssh.log(`plain=[${{plain.stdout}}] given=[${{given.stdout}}]`);\n\
             }}\n",
            d = out.display()
        ),
    );
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  probe:\n    task: site.sudo.probe\n    targets: [nopass, pass]\n  \
         mount:\n    task: loom.system.add_sshfs_mount\n    args: [*storage]\n    targets: [nopass, pass]\n",
    );
    let daemon = ws.serve();
    daemon.wait_started();
    let events = std::process::Command::new("curl")
        .args(["-sN", "--max-time", "60", &format!("{}/api/v1/events", ws.server())])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut shown = String::new();
    for job in ["probe", "mount"] {
        let run = ws.loom(&["run", job, "-v"]);
        shown.push_str(&run.all());
        run.assert_code(0);
    }
    let logs = ws.loom(&["logs", "1"]).all();
    assert_eq!(logs.matches("plain=[] given=[given input").count(), 2, "{logs}");
    for node in ["nopass", "pass"] {
        assert_eq!(std::fs::read_to_string(out.join(format!("{node}-who"))).unwrap().trim(), "root");
    }
    for args in [&["history", "--json"][..], &["logs", "1", "--json"], &["logs", "2", "--json"], &["status", "--json"]]
    {
        shown.push_str(&ws.loom(args).all());
    }
    let (code, log) = daemon.stop();
    // The daemon's end closes the event stream.
    let events = events.wait_with_output().unwrap();
    let events = String::from_utf8_lossy(&events.stdout);
    assert!(events.contains("plain=[]"), "the event stream missed the output: {events}");
    shown.push_str(&events);
    assert_eq!(code, Some(0), "{log}");
    assert!(!shown.contains(PASSWORD), "the password was shown:\n{shown}");
    assert!(!log.contains(PASSWORD), "the password is in the daemon's log");
    let files = contents(ws.dir.path()).into_iter().chain(contents(&out));
    // The node manifest is where the password comes from.
    for (path, bytes) in files.filter(|(path, _)| !path.ends_with("nodes.yaml")) {
        assert!(!holds(&bytes, PASSWORD), "the password is in {path}");
    }
    let fstab = std::fs::read_to_string(&fstab).unwrap();
    assert_eq!(fstab.lines().filter(|l| l.starts_with("sshfs#backup:/srv")).count(), 1, "{fstab}");
}

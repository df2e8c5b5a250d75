//! The bundled `loom.system` tasks on a real sshd node: remote effects, idempotency,
//! and quoting of hostile values.
//!
//! FUSE is not available in the test sandbox, so `mount` and `mountpoint` are
//! stand-ins on the node's PATH (see the harness) that record their calls; the rest
//! of `add_sshfs_mount` (fstab, mkdir, skip rules) runs for real. The same goes for
//! `systemctl` and the package manager.

use crate::harness::Workspace;
use crate::harness::sshd::{self, Fleet};

const HOSTILE: &str = "it's; $(touch /tmp/loom-pwned) `id` \"q\" \\ $HOME";

fn setup(fleet: &Fleet, jobs: &str) -> Workspace {
    let ws = Workspace::new(&format!("datafile: data.yaml\n{}", fleet.ssh_settings("strict")), &fleet.nodes_yaml());
    ws.write("jobs/a.yaml", jobs);
    ws
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

#[test]
fn add_sshfs_mount_is_idempotent_and_skips_excluded_nodes() {
    if !sshd::is_root() {
        eprintln!("skipped: needs the sudo-capable test user");
        return;
    }
    let fleet = Fleet::start(2);
    let dir = fleet.shared_dir("state");
    let calls = dir.join("calls");
    fleet.stand_in(
        "mount",
        &format!(
            "echo \"mount $*\" >> {c}; touch {d}/mounted-\"$(basename \"$1\")\"",
            c = calls.display(),
            d = dir.display()
        ),
    );
    fleet.stand_in("mountpoint", &format!("test -e {d}/mounted-\"$(basename \"$2\")\"", d = dir.display()));
    let fstab = dir.join("fstab");
    std::fs::write(&fstab, "# fstab\n").unwrap();
    let mountpoint = dir.join("mnt").join("storage");
    let ws = setup(
        &fleet,
        "jobs:\n  mountstorage:\n    task: loom.system.add_sshfs_mount\n    args: [*storage]\n    targets: [n01, n02]\n",
    );
    ws.write(
        "data.yaml",
        &format!(
            "mountpoints:\n  - &storage\n    host: root@staging\n    remotepath: /mnt/storage\n    mountpoint: {}\n    excludes: [n02]\n    fstab: {}\n",
            mountpoint.display(),
            fstab.display()
        ),
    );
    ws.loom(&["run", "mountstorage", "-v"]).assert_code(0);
    let expected = format!(
        "sshfs#root@staging:/mnt/storage\t{}\tfuse\tdefaults,allow_other,exec,reconnect,transform_symlinks\t0 0",
        mountpoint.display()
    );
    assert_eq!(lines(&fstab), vec!["# fstab".to_string(), expected.clone()]);
    assert!(mountpoint.is_dir());
    assert_eq!(lines(&calls), vec![format!("mount {}", mountpoint.display())]);
    // Second run: nothing changes (n02 stays excluded, n01 is already set up).
    let second = ws.loom(&["run", "mountstorage", "-v"]);
    second.assert_code(0);
    assert_eq!(lines(&fstab), vec!["# fstab".to_string(), expected]);
    assert_eq!(lines(&calls).len(), 1, "mounted again: {:?}", lines(&calls));
    assert!(second.stdout.contains("skipped: node n02 is in excludes"), "{}", second.stdout);
}

#[test]
fn ensure_line_and_ensure_dir_change_only_what_differs_and_keep_hostile_text_literal() {
    let fleet = Fleet::start(1);
    let dir = fleet.shared_dir("state");
    let _ = std::fs::remove_file("/tmp/loom-pwned");
    let file = dir.join("conf file.txt");
    let folder = dir.join("a b").join("c'd");
    let ws = setup(
        &fleet,
        "jobs:\n  line:\n    task: loom.system.ensure_line\n    args: [*file, *hostile, {sudo: false}]\n    targets: [n01]\n  \
         dir:\n    task: loom.system.ensure_dir\n    args: [*folder, {sudo: false, mode: \"0750\"}]\n    targets: [n01]\n  \
         echo:\n    task: site.t.echo\n    args: [*file, *hostile]\n    targets: [n01]\n",
    );
    ws.write(
        "data.yaml",
        &format!(
            "values:\n  - &file \"{}\"\n  - &folder \"{}\"\n  - &hostile '{}'\n",
            file.display(),
            folder.display(),
            HOSTILE.replace('\'', "''")
        ),
    );
    ws.write(
        "tasks/site/t.rhai",
        "fn echo(ssh, path, text) { ssh.run(`printf '%s\\n' ${quote(text)} > ${quote(path + \".echo\")}`); }\n",
    );
    for _ in 0..2 {
        ws.loom(&["run", "line"]).assert_code(0);
        ws.loom(&["run", "dir"]).assert_code(0);
    }
    ws.loom(&["run", "echo"]).assert_code(0);
    assert_eq!(lines(&file), vec![HOSTILE.to_string()], "the line arrived changed or twice");
    assert_eq!(lines(&dir.join("conf file.txt.echo")), vec![HOSTILE.to_string()]);
    assert!(folder.is_dir());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o750);
    assert!(!std::path::Path::new("/tmp/loom-pwned").exists(), "a hostile value ran as a command");
}

#[test]
fn service_package_script_and_upload() {
    if !sshd::is_root() {
        eprintln!("skipped: needs the sudo-capable test user");
        return;
    }
    let fleet = Fleet::start(1);
    let dir = fleet.shared_dir("state");
    let calls = dir.join("calls");
    let log = |name: &str| format!("echo \"{name} $(id -un) $*\" >> {}", calls.display());
    fleet.stand_in("systemctl", &log("systemctl"));
    // Installed packages are remembered by a hash of their name (names may hold `/`).
    let mark = |arg: &str| format!("{}/installed-$(printf %s \"{arg}\" | md5sum | cut -c1-8)", dir.display());
    fleet.stand_in("apt-get", &format!("{}; shift 2; for p in \"$@\"; do touch {}; done", log("apt-get"), mark("$p")));
    fleet.stand_in(
        "dpkg-query",
        &format!("if [ -e {} ]; then printf 'install ok installed'; else exit 1; fi", mark("$3")),
    );
    let script = fleet.path("hello.sh");
    std::fs::write(&script, format!("#!/bin/sh\nprintf '%s|' \"$@\" > {}/script-args\n", dir.display())).unwrap();
    let uploaded = dir.join("motd");
    let ws = setup(
        &fleet,
        &format!(
            "jobs:\n  svc:\n    task: loom.system.service\n    args: [\"nginx\", \"restart\"]\n    targets: [n01]\n  \
             badsvc:\n    task: loom.system.service\n    args: [\"nginx\", \"explode\"]\n    targets: [n01]\n  \
             pkg:\n    task: loom.system.package\n    args: [[curl, *hostile]]\n    targets: [n01]\n  \
             script:\n    task: loom.system.script\n    args: [\"{}\", [one, *hostile]]\n    targets: [n01]\n  \
             upload:\n    task: loom.system.upload\n    args: [\"hello\\n\", \"{}\", {{mode: \"0600\"}}]\n    targets: [n01]\n",
            script.display(),
            uploaded.display()
        ),
    );
    ws.write("data.yaml", &format!("values:\n  - &hostile '{}'\n", HOSTILE.replace('\'', "''")));
    ws.loom(&["run", "svc"]).assert_code(0);
    let bad = ws.loom(&["run", "badsvc"]);
    bad.assert_code(1);
    assert!(bad.stdout.contains("unknown service action 'explode'"), "{}", bad.stdout);
    ws.loom(&["run", "pkg"]).assert_code(0);
    ws.loom(&["run", "pkg"]).assert_code(0);
    ws.loom(&["run", "script"]).assert_code(0);
    ws.loom(&["run", "upload"]).assert_code(0);
    let recorded = lines(&calls);
    assert_eq!(recorded[0], "systemctl root restart nginx");
    assert_eq!(recorded[1], format!("apt-get root install -y curl {HOSTILE}"));
    assert_eq!(recorded.len(), 2, "package installed twice: {recorded:?}");
    assert_eq!(std::fs::read_to_string(dir.join("script-args")).unwrap(), format!("one|{HOSTILE}|"));
    assert_eq!(std::fs::read_to_string(&uploaded).unwrap(), "hello\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&uploaded).unwrap().permissions().mode() & 0o777, 0o600);
}

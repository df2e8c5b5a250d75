//! The system resource types (`package`, `service`, `user`, `group`,
//! `authorized_key`, `cron`, `mount`) and the `loom.debian` and `loom.nginx` types
//! on real sshd nodes, each with a root login and a non-root login that uses sudo:
//! converge, a second run that changes nothing, then `--check` after a manual edit.
//!
//! Everything is real on this Debian machine except nginx (a stand-in on the nodes'
//! PATH checks the sites for a marker, as `nginx -t` would): a tiny .deb built with
//! dpkg-deb is installed from a `file:` APT source through apt-get (no network),
//! an `/etc/init.d` script is started through `service` and enabled with
//! update-rc.d (no systemd runs here), users, groups, crontabs and authorized_keys
//! are made with the system's tools, and a tmpfs is mounted from a test fstab.
//! Every name a test makes on the host is unique to the test run, and removed at the
//! end (also when the test fails: the fixtures clean up when dropped).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::Workspace;
use crate::harness::sshd::{self, Fleet};

/// A name no other test run on this machine uses: `prefix` and this process's id.
/// Held by the tests that run apt: one's `apt-get update` may replace the package
/// lists the other's `apt-get install` is reading (one machine, one /var/lib/apt).
static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", std::process::id())
}

fn sh(script: &str) -> std::process::Output {
    Command::new("sh").arg("-c").arg(script).output().unwrap()
}

/// A local APT repository (`file:` source) holding tiny packages built here.
struct AptRepo {
    dir: PathBuf,
    /// `/etc/apt/sources.list.d/NAME.list`, once a test has made it.
    source: String,
    packages: Vec<String>,
}

impl AptRepo {
    fn new(dir: PathBuf, source: &str) -> AptRepo {
        std::fs::create_dir_all(&dir).unwrap();
        // apt's download method runs as `_apt`, which must read the folder.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        AptRepo { dir, source: source.to_string(), packages: Vec::new() }
    }

    /// Builds package `name` at `version` (a file under /usr/share/NAME says which)
    /// and rewrites the repository's index.
    fn add(&mut self, name: &str, version: &str) {
        let root = self.dir.join(format!("build-{name}-{version}"));
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            format!(
                "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: Loom tests <loom@example.invalid>\n\
                 Description: a package of the Loom tests\n"
            ),
        )
        .unwrap();
        std::fs::write(root.join(format!("usr/share/{name}/version")), version).unwrap();
        let deb = self.dir.join(format!("{name}_{version}_all.deb"));
        let built =
            Command::new("dpkg-deb").arg("--build").arg("--root-owner-group").arg(&root).arg(&deb).output().unwrap();
        assert!(built.status.success(), "dpkg-deb: {}", String::from_utf8_lossy(&built.stderr));
        std::fs::remove_dir_all(&root).unwrap();
        let index =
            sh(&format!("cd '{}' && dpkg-scanpackages --multiversion . /dev/null > Packages", self.dir.display()));
        assert!(index.status.success(), "dpkg-scanpackages: {}", String::from_utf8_lossy(&index.stderr));
        if !self.packages.iter().any(|p| p == name) {
            self.packages.push(name.to_string());
        }
    }

    /// The `deb` line of this repository.
    fn line(&self) -> String {
        format!("deb [trusted=yes] file:{} ./", self.dir.display())
    }

    fn list_file(&self) -> String {
        format!("/etc/apt/sources.list.d/{}.list", self.source)
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        for package in &self.packages {
            let _ = sh(&format!("dpkg -s {package} >/dev/null 2>&1 && dpkg --purge {package} >/dev/null 2>&1"));
        }
        let _ = std::fs::remove_file(self.list_file());
        // apt names a `file:` source's index after its folder, `/` as `_`
        // (`/tmp/x/repo` is `_tmp_x_repo_._Packages…`).
        let prefix = format!("{}_", self.dir.display().to_string().replace('/', "_"));
        for entry in std::fs::read_dir("/var/lib/apt/lists").into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

fn installed_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Abbrev} ${Version}", package]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.strip_prefix("ii  ").map(str::to_string)
}

/// An /etc/init.d script that records its calls and keeps its state in a file.
struct InitScript {
    name: String,
    calls: PathBuf,
}

impl InitScript {
    fn new(name: &str, state_dir: &Path) -> InitScript {
        let calls = state_dir.join(format!("{name}.calls"));
        let running = state_dir.join(format!("{name}.running"));
        let script = format!(
            "#!/bin/sh\n### BEGIN INIT INFO\n# Provides:          {name}\n# Required-Start:\n# Required-Stop:\n\
             # Default-Start:     2 3 4 5\n# Default-Stop:      0 1 6\n# Short-Description: a service of the Loom tests\n\
             ### END INIT INFO\necho \"$1\" >> {calls}\ncase \"$1\" in\n  start|restart) touch {running} ;;\n\
             \x20 stop) rm -f {running} ;;\n  reload) ;;\n  status) test -e {running} ;;\n  *) exit 3 ;;\nesac\n",
            calls = calls.display(),
            running = running.display()
        );
        let path = format!("/etc/init.d/{name}");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        InitScript { name: name.to_string(), calls }
    }

    /// The actions called so far, `status` left out.
    fn actions(&self) -> Vec<String> {
        std::fs::read_to_string(&self.calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| *l != "status")
            .map(str::to_string)
            .collect()
    }

    fn enabled(&self) -> bool {
        sh(&format!("ls /etc/rc2.d/S[0-9][0-9]{} >/dev/null 2>&1", self.name)).status.success()
    }
}

impl Drop for InitScript {
    fn drop(&mut self) {
        let _ = sh(&format!("update-rc.d -f {} remove >/dev/null 2>&1", self.name));
        let _ = std::fs::remove_file(format!("/etc/init.d/{}", self.name));
    }
}

/// Accounts (users first, then groups) removed when dropped, with their crontabs and homes.
#[derive(Default)]
struct Accounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = sh(&format!(
                "crontab -u {user} -r >/dev/null 2>&1; userdel -r {user} >/dev/null 2>&1; rm -f /var/spool/cron/crontabs/{user}"
            ));
        }
        for group in &self.groups {
            let _ = sh(&format!("groupdel {group} >/dev/null 2>&1"));
        }
    }
}

/// A mount point unmounted when dropped.
struct MountPoint(PathBuf);

impl Drop for MountPoint {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

/// Two logins to one sshd node: `asroot` (root) and `viasudo` (the test user, with
/// passwordless sudo). Both act on this machine, so each declares its own names.
const LOGINS: [&str; 2] = ["asroot", "viasudo"];

fn workspace(fleet: &Fleet) -> Workspace {
    let node = &fleet.nodes[0];
    let nodes = format!(
        "{}{}",
        fleet.node_yaml_as(node, "asroot", "root"),
        fleet.node_yaml_as(node, "viasudo", sshd::KEY_USER)
    );
    // No API: `loom run` runs in-process and never meets another test's daemon.
    Workspace::new(&format!("listen: off\n{}", fleet.ssh_settings("strict")), &nodes)
}

/// `loom run ARGS… --json`, parsed; exit code `code`.
fn run_json(ws: &Workspace, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.push("--json");
    let started = std::time::Instant::now();
    let run = ws.loom(&all);
    // Shown with --nocapture: where a slow test spends its time.
    eprintln!("loom {} took {:?}", args.join(" "), started.elapsed());
    run.assert_code(code);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr))
}

/// `(node, type, status)` of every resource of a run, in the order run.
fn statuses(detail: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for result in detail["results"].as_array().unwrap() {
        let node = result["node"].as_str().unwrap_or_default().to_string();
        for resource in result["resources"].as_array().unwrap_or(&Vec::new()) {
            found.push((node.clone(), type_of(resource), resource["status"].as_str().unwrap_or_default().to_string()));
        }
    }
    found
}

/// A resource's type: its label (`user[name]`, `loom.nginx.reload (handler reload)`) up to the name.
fn type_of(resource: &serde_json::Value) -> String {
    let label = resource["resource"].as_str().unwrap_or_default();
    label.split(['[', ' ']).next().unwrap_or_default().to_string()
}

/// The statuses of `node`'s resources that were not skipped, as `type status`.
fn of_node(detail: &serde_json::Value, node: &str) -> Vec<String> {
    statuses(detail)
        .into_iter()
        .filter(|(n, _, status)| n == node && status != "skipped")
        .map(|(_, kind, status)| format!("{kind} {status}"))
        .collect()
}

/// The resource `kind` of `node` in a run.
fn resource<'a>(detail: &'a serde_json::Value, node: &str, kind: &str) -> &'a serde_json::Value {
    detail["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["node"] == node)
        .flat_map(|r| r["resources"].as_array().unwrap().iter())
        .find(|r| type_of(r) == kind && r["status"] != "skipped")
        .unwrap_or_else(|| panic!("no {kind} of {node} in {detail}"))
}

/// (inode, mtime) of a file: the same pair means it was not written again.
fn stamp(path: &str) -> (u64, i64) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (meta.ino(), meta.mtime_nsec() + meta.mtime() * 1_000_000_000)
}

fn getent(database: &str, key: &str) -> String {
    String::from_utf8_lossy(&Command::new("getent").args([database, key]).output().unwrap().stdout).trim().to_string()
}

/// The names one login's resources use on this machine.
struct Names {
    login: &'static str,
    user: String,
    group: String,
    gid: u32,
    service: String,
    mountpoint: PathBuf,
    fstab: PathBuf,
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJtqlF3XWqjR6nK1JvqB9dKt7wC4cQd0Zt8qsd4fYpXg loom-test";

impl Names {
    fn new(login: &'static str, index: u32, dir: &Path) -> Names {
        let short = &login[..1];
        Names {
            login,
            user: unique(&format!("lt{short}u")),
            group: unique(&format!("lt{short}g")),
            // Free ids, well away from the ones useradd hands out.
            gid: free_id("group", 61000 + std::process::id() % 1000 * 2 + index),
            service: unique(&format!("loomtest-{short}svc")),
            mountpoint: dir.join(format!("mnt-{login}")),
            fstab: dir.join(format!("fstab-{login}")),
        }
    }

    /// This login's resources, each only on its own node.
    fn resources(&self) -> String {
        let when = format!("when: 'node == \"{}\"'", self.login);
        format!(
            "      - group: {{name: {g}, gid: {gid}, {when}}}\n\
             \x20     - user: {{name: {u}, groups: [{g}], shell: /bin/sh, comment: \"Loom test\", {when}}}\n\
             \x20     - authorized_key: {{user: {u}, key: \"{KEY}\", {when}}}\n\
             \x20     - cron: {{name: nightly, user: {u}, job: 'echo \"it''s late\" > /dev/null', minute: \"5\", hour: \"3\", {when}}}\n\
             \x20     - service: {{name: {s}, state: running, enabled: true, {when}}}\n\
             \x20     - mount: {{path: \"{m}\", src: tmpfs, fstype: tmpfs, opts: \"size=1m\", fstab: \"{f}\", {when}}}\n",
            g = self.group,
            gid = self.gid,
            u = self.user,
            s = self.service,
            m = self.mountpoint.display(),
            f = self.fstab.display(),
        )
    }

    fn home(&self) -> String {
        getent("passwd", &self.user).split(':').nth(5).unwrap_or_default().to_string()
    }

    fn keys_file(&self) -> String {
        format!("{}/.ssh/authorized_keys", self.home())
    }

    fn crontab_file(&self) -> String {
        format!("/var/spool/cron/crontabs/{}", self.user)
    }

    fn mounted(&self) -> bool {
        Command::new("mountpoint").arg("-q").arg(&self.mountpoint).status().unwrap().success()
    }
}

/// No command of a run changed accounts, crontabs, services or mounts: what ran
/// (each command is in the node's output as `$ …`) was read-only.
fn assert_no_change_command(detail: &serde_json::Value) {
    for result in detail["results"].as_array().unwrap() {
        let output = result["output"].as_str().unwrap_or_default();
        for command in output.lines().filter(|l| l.starts_with("$ ")) {
            let changing = [
                "useradd",
                "usermod",
                "userdel",
                "groupadd",
                "groupmod",
                "groupdel",
                " start;",
                " stop;",
                "' defaults",
                "' disable",
                "LIBMOUNT_FSTAB",
                "umount",
                "cat >",
                "mv -f",
                // No package manager is asked to install, remove or refresh.
                "apt-get",
                "dnf -y",
                "yum -y",
                "apk add",
                "apk del",
                "apk update",
            ];
            for tool in changing {
                assert!(!command.contains(tool), "`{tool}` ran: {command}\n{output}");
            }
            assert!(!(command.contains("crontab") && command.ends_with(" -")), "a crontab was installed: {command}");
        }
    }
}

/// `start`, or the next id after it that no `database` entry has.
fn free_id(database: &str, start: u32) -> u32 {
    (start..start + 100).find(|id| getent(database, &id.to_string()).is_empty()).unwrap()
}

#[test]
fn accounts_keys_cron_service_and_mount_converge_stay_unchanged_and_report_drift() {
    if !sshd::is_root() {
        eprintln!("skipped: needs root, for a root login and the system's accounts");
        return;
    }
    let fleet = Fleet::start(1);
    let dir = fleet.shared_dir("state");
    let names: Vec<Names> = LOGINS.iter().enumerate().map(|(i, login)| Names::new(login, i as u32, &dir)).collect();
    let mut accounts = Accounts::default();
    let mut scripts = Vec::new();
    let mut mounts = Vec::new();
    for n in &names {
        accounts.users.push(n.user.clone());
        accounts.groups.push(n.group.clone());
        scripts.push(InitScript::new(&n.service, &dir));
        mounts.push(MountPoint(n.mountpoint.clone()));
        std::fs::write(&n.fstab, "# a test fstab\nproc /proc proc defaults 0 0\n").unwrap();
    }
    let ws = workspace(&fleet);
    let resources: String = names.iter().map(Names::resources).collect();
    ws.write(
        "jobs/a.yaml",
        &format!("jobs:\n  converge:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{resources}"),
    );

    // Converge: everything is made, by root and through sudo alike.
    let first = run_json(&ws, &["converge"], 0);
    for n in &names {
        let expected: Vec<String> = ["group", "user", "authorized_key", "cron", "service", "mount"]
            .iter()
            .map(|t| format!("{t} changed"))
            .collect();
        assert_eq!(of_node(&first, n.login), expected, "{first}");
        let passwd = getent("passwd", &n.user);
        assert!(passwd.contains(":Loom test:") && passwd.ends_with(":/bin/sh"), "{passwd}");
        assert!(getent("group", &n.group).starts_with(&format!("{}:x:{}:{}", n.group, n.gid, n.user)));
        assert_eq!(std::fs::read_to_string(n.keys_file()).unwrap(), format!("{KEY}\n"));
        let modes = sh(&format!("stat -c '%a %U' {h}/.ssh {h}/.ssh/authorized_keys", h = n.home()));
        assert_eq!(String::from_utf8_lossy(&modes.stdout), format!("700 {u}\n600 {u}\n", u = n.user));
        let crontab = String::from_utf8_lossy(&sh(&format!("crontab -u {} -l", n.user)).stdout).to_string();
        assert!(crontab.contains("# loom: nightly\n5 3 * * * echo \"it's late\" > /dev/null\n"), "{crontab}");
        assert!(n.mounted(), "{} is not mounted", n.mountpoint.display());
        let fstab = std::fs::read_to_string(&n.fstab).unwrap();
        assert!(fstab.ends_with(&format!("tmpfs\t{}\ttmpfs\tsize=1m\t0 0\n", n.mountpoint.display())), "{fstab}");
    }
    for script in &scripts {
        assert_eq!(script.actions(), ["start"]);
        assert!(script.enabled());
    }

    // A second run finds nothing to do and writes nothing. (/etc/passwd and friends are
    // not compared: other test runs on this machine set their test users' passwords.)
    let files: Vec<String> =
        names.iter().flat_map(|n| [n.keys_file(), n.crontab_file(), n.fstab.display().to_string()]).collect();
    let before: Vec<(u64, i64)> = files.iter().map(|f| stamp(f)).collect();
    let second = run_json(&ws, &["converge"], 0);
    for n in &names {
        assert!(of_node(&second, n.login).iter().all(|s| s.ends_with(" unchanged")), "{second}");
        assert_eq!(of_node(&second, n.login).len(), 6, "{second}");
    }
    let after: Vec<(u64, i64)> = files.iter().map(|f| stamp(f)).collect();
    assert_eq!(before, after, "a second run wrote one of {files:?}");
    assert_no_change_command(&second);
    for script in &scripts {
        assert_eq!(script.actions(), ["start"], "the service was acted on again");
    }

    // Drift by hand on the root login's things; --check reports exactly that and
    // changes nothing.
    let n = &names[0];
    assert!(sh(&format!("usermod -s /bin/bash {}", n.user)).status.success());
    std::fs::write(n.keys_file(), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther other\n").unwrap();
    assert!(sh(&format!("printf '1 1 * * * true\\n' | crontab -u {} -", n.user)).status.success());
    assert!(sh(&format!("/etc/init.d/{} stop", n.service)).status.success());
    assert!(Command::new("umount").arg(&n.mountpoint).status().unwrap().success());
    let drifted: Vec<(u64, i64)> = files.iter().map(|f| stamp(f)).collect();
    let check = run_json(&ws, &["converge", "--check"], 0);
    assert_eq!(check["fire"]["status"], "drift", "{check}");
    assert_eq!(
        of_node(&check, "asroot"),
        [
            "group unchanged",
            "user changed",
            "authorized_key changed",
            "cron changed",
            "service changed",
            "mount changed"
        ],
        "{check}"
    );
    assert!(of_node(&check, "viasudo").iter().all(|s| s.ends_with(" unchanged")), "{check}");
    let user = resource(&check, "asroot", "user");
    assert_eq!(user["changes"][0]["field"], "shell", "{user}");
    assert_eq!(
        (user["changes"][0]["before"].as_str(), user["changes"][0]["after"].as_str()),
        (Some("/bin/bash"), Some("/bin/sh"))
    );
    let key_diff = resource(&check, "asroot", "authorized_key")["diff"].as_str().unwrap_or_default().to_string();
    // Other keys stay: the declared one is added back after them.
    assert!(
        key_diff.contains(&format!("\n+{KEY}"))
            && key_diff.contains("\n ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther other"),
        "{key_diff}"
    );
    let cron_diff = resource(&check, "asroot", "cron")["diff"].as_str().unwrap_or_default().to_string();
    assert!(cron_diff.contains("+# loom: nightly") && cron_diff.contains(" 1 1 * * * true"), "{cron_diff}");
    // Nothing was changed by the check.
    assert_eq!(files.iter().map(|f| stamp(f)).collect::<Vec<_>>(), drifted);
    assert_no_change_command(&check);
    assert!(getent("passwd", &n.user).ends_with(":/bin/bash"));
    assert!(!n.mounted());
    assert_eq!(scripts[0].actions(), ["start", "stop"]);

    // Removing: every type's `absent` (the service stopped and disabled) undoes it all.
    let gone: String = names
        .iter()
        .map(|n| {
            let when = format!("when: 'node == \"{}\"'", n.login);
            format!(
                "      - mount: {{path: \"{m}\", fstab: \"{f}\", state: absent, {when}}}\n\
                 \x20     - service: {{name: {s}, state: stopped, enabled: false, {when}}}\n\
                 \x20     - cron: {{name: nightly, user: {u}, state: absent, {when}}}\n\
                 \x20     - authorized_key: {{user: {u}, key: \"{KEY}\", state: absent, {when}}}\n\
                 \x20     - user: {{name: {u}, state: absent, remove: true, {when}}}\n\
                 \x20     - group: {{name: {g}, state: absent, {when}}}\n",
                m = n.mountpoint.display(),
                f = n.fstab.display(),
                s = n.service,
                u = n.user,
                g = n.group,
            )
        })
        .collect();
    ws.write(
        "jobs/b.yaml",
        &format!("jobs:\n  remove:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{gone}"),
    );
    run_json(&ws, &["remove"], 0);
    let again = run_json(&ws, &["remove"], 0);
    for n in &names {
        assert!(of_node(&again, n.login).iter().all(|s| s.ends_with(" unchanged")), "{again}");
        assert!(getent("passwd", &n.user).is_empty() && getent("group", &n.group).is_empty());
        assert!(!n.mounted());
        assert_eq!(std::fs::read_to_string(&n.fstab).unwrap(), "# a test fstab\nproc /proc proc defaults 0 0\n");
    }
    for script in &scripts {
        assert!(!script.enabled());
    }
}

/// `when:` for one login.
fn on(login: &str) -> String {
    format!("when: 'node == \"{login}\"'")
}

#[test]
fn packages_install_upgrade_and_remove_through_apt_from_a_local_source() {
    let _apt = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !sshd::is_root() {
        eprintln!("skipped: needs root, for a root login and dpkg");
        return;
    }
    let fleet = Fleet::start(1);
    let source = unique("loom-test-");
    let mut repo = AptRepo::new(fleet.path("repo"), &source);
    let packages = [unique("loomtest-r-"), unique("loomtest-s-")];
    for package in &packages {
        repo.add(package, "1.0");
    }
    let ws = workspace(&fleet);
    let declare = |state: &str| -> String {
        LOGINS
            .iter()
            .zip(&packages)
            .map(|(login, package)| format!("      - package: {{name: {package}, state: {state}, {}}}\n", on(login)))
            .collect()
    };
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  source:\n    targets: [asroot]\n    resources:\n      \
             - loom.debian.apt_source: {{name: {source}, lines: \"{line}\"}}\n  \
             install:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{present}  \
             upgrade:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{latest}  \
             remove:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{absent}  \
             auto:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n      \
             - loom.debian.unattended_upgrades: {{}}\n",
            line = repo.line(),
            present = declare("present"),
            latest = declare("latest"),
            absent = declare("absent"),
        ),
    );

    // Unattended upgrades, checked only (the real package and /etc/apt/apt.conf.d
    // file are not the test's to make): both parts would change, nothing does.
    let settings = Path::new("/etc/apt/apt.conf.d/20auto-upgrades");
    if installed_version("unattended-upgrades").is_none() && !settings.exists() {
        let auto = run_json(&ws, &["auto", "--check"], 0);
        for login in LOGINS {
            let outcome = resource(&auto, login, "loom.debian.unattended_upgrades");
            let fields: Vec<&str> =
                outcome["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
            assert_eq!(fields[..2], ["unattended-upgrades", "file.state"], "{outcome}");
            assert!(
                outcome["diff"].as_str().unwrap().contains("+APT::Periodic::Unattended-Upgrade \"1\";"),
                "{outcome}"
            );
        }
        assert!(!settings.exists() && installed_version("unattended-upgrades").is_none(), "--check changed the node");
    }

    // The source, made and refreshed once.
    assert_eq!(of_node(&run_json(&ws, &["source"], 0), "asroot"), ["loom.debian.apt_source changed"]);
    let list = stamp(&repo.list_file());
    assert_eq!(std::fs::read_to_string(repo.list_file()).unwrap(), format!("{}\n", repo.line()));
    assert_eq!(of_node(&run_json(&ws, &["source"], 0), "asroot"), ["loom.debian.apt_source unchanged"]);
    assert_eq!(stamp(&repo.list_file()), list);

    // Installed through apt-get, by root and through sudo.
    let first = run_json(&ws, &["install"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&first, login), ["package changed"], "{first}");
    }
    for package in &packages {
        assert_eq!(installed_version(package).as_deref(), Some("1.0"));
    }
    let change = &resource(&first, "viasudo", "package")["changes"][0];
    assert_eq!((change["before"].as_str(), change["after"].as_str()), (Some("absent"), Some("present")), "{change}");
    // Again: nothing to do, and no package manager run.
    let second = run_json(&ws, &["install"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&second, login), ["package unchanged"], "{second}");
    }
    // (dpkg's database is not compared: other test runs on this machine may use apt.)
    assert!(!second.to_string().contains("apt-get -y"), "apt-get ran: {second}");

    // Removed by hand: --check sees it and installs nothing.
    assert!(sh(&format!("dpkg --purge {}", packages[0])).status.success());
    let check = run_json(&ws, &["install", "--check"], 0);
    assert_eq!(check["fire"]["status"], "drift", "{check}");
    assert_eq!(of_node(&check, "asroot"), ["package changed"], "{check}");
    assert_eq!(of_node(&check, "viasudo"), ["package unchanged"], "{check}");
    assert_eq!(installed_version(&packages[0]), None, "--check installed it");

    // A newer version in the source (its list refreshed as a nightly `apt-get update` would).
    for package in &packages {
        repo.add(package, "2.0");
    }
    let refresh = sh(&format!(
        "apt-get update -q -o DPkg::Lock::Timeout=300 -o Dir::Etc::SourceList={} -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0",
        repo.list_file()
    ));
    assert!(refresh.status.success(), "{}", String::from_utf8_lossy(&refresh.stderr));
    // `latest` installs the missing one at the newest version and upgrades the other.
    let would = run_json(&ws, &["upgrade", "--check"], 0);
    for (login, before) in [("asroot", "absent"), ("viasudo", "1.0")] {
        let change = &resource(&would, login, "package")["changes"][0];
        assert_eq!((change["before"].as_str(), change["after"].as_str()), (Some(before), Some("2.0")), "{would}");
    }
    assert_eq!(installed_version(&packages[1]).as_deref(), Some("1.0"));
    let upgraded = run_json(&ws, &["upgrade"], 0);
    for (login, package) in LOGINS.iter().zip(&packages) {
        assert_eq!(of_node(&upgraded, login), ["package changed"], "{upgraded}");
        assert_eq!(installed_version(package).as_deref(), Some("2.0"));
    }
    let again = run_json(&ws, &["upgrade"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&again, login), ["package unchanged"], "{again}");
    }

    // Removed, then nothing left to remove.
    let removed = run_json(&ws, &["remove"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&removed, login), ["package changed"], "{removed}");
    }
    for package in &packages {
        assert_eq!(installed_version(package), None);
    }
    let again = run_json(&ws, &["remove"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&again, login), ["package unchanged"], "{again}");
    }
}

#[test]
fn nginx_sites_are_tested_before_they_stay_and_reloads_are_handlers() {
    if !sshd::is_root() {
        eprintln!("skipped: needs root, for a root login and an init script");
        return;
    }
    let fleet = Fleet::start(1);
    let conf = fleet.shared_dir("nginx");
    for sub in ["sites-available", "sites-enabled"] {
        std::fs::create_dir_all(conf.join(sub)).unwrap();
    }
    // nginx -t: a site holding BROKEN does not pass.
    let tests = conf.join("tests");
    fleet.stand_in(
        "nginx",
        &format!(
            "echo \"nginx $*\" >> {t}\nif grep -Rqs BROKEN {d}/sites-enabled/; then \
             echo \"nginx: [emerg] unknown directive BROKEN in {d}/nginx.conf\" >&2; exit 1; fi",
            t = tests.display(),
            d = conf.display()
        ),
    );
    let service = InitScript::new(&unique("loomtest-nginx-"), &conf);
    let ws = workspace(&fleet);
    let site = |login: &str, content: &str, state: &str| {
        format!(
            "      - loom.nginx.site: {{name: app-{login}, content: \"{content}\", state: {state}, dir: \"{d}\", notify: reload, {w}}}\n",
            d = conf.display(),
            w = on(login)
        )
    };
    let job = |name: &str, sites: String| {
        format!(
            "  {name}:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{sites}    handlers:\n      \
             reload: {{loom.nginx.reload: {{service: {s}, dir: \"{d}\"}}}}\n",
            s = service.name,
            d = conf.display()
        )
    };
    let good = "server { listen 80; }\\n";
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n{}{}{}",
            job("web", LOGINS.iter().map(|l| site(l, good, "enabled")).collect()),
            job(
                "broken",
                format!("{}{}", site("asroot", "server { BROKEN; }\\n", "enabled"), site("viasudo", good, "enabled"))
            ),
            job("off", LOGINS.iter().map(|l| site(l, good, "disabled")).collect()),
        ),
    );
    let available = |login: &str| conf.join(format!("sites-available/app-{login}"));
    let enabled = |login: &str| conf.join(format!("sites-enabled/app-{login}"));

    // nginx runs (each node's handler reloads it once).
    assert!(sh(&format!("/etc/init.d/{} start", service.name)).status.success());
    let first = run_json(&ws, &["web"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&first, login), ["loom.nginx.site changed", "loom.nginx.reload changed"], "{first}");
        assert_eq!(std::fs::read_to_string(available(login)).unwrap(), "server { listen 80; }\n");
        assert_eq!(std::fs::read_link(enabled(login)).unwrap(), available(login));
    }
    assert_eq!(service.actions(), ["start", "reload", "reload"]);
    let second = run_json(&ws, &["web"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&second, login), ["loom.nginx.site unchanged"], "{second}");
    }
    assert_eq!(service.actions().len(), 3, "reloaded with nothing changed");

    // A site nginx refuses is put back as it was, and nothing is reloaded.
    let broken = ws.loom(&["run", "broken", "--json"]);
    broken.assert_code(1);
    assert!(broken.stdout.contains("unknown directive BROKEN"), "{}", broken.stdout);
    assert_eq!(std::fs::read_to_string(available("asroot")).unwrap(), "server { listen 80; }\n");
    assert_eq!(std::fs::read_link(enabled("asroot")).unwrap(), available("asroot"));
    assert_eq!(service.actions().len(), 3, "reloaded after a failed test");

    // Disabled: the links go, the files stay, nginx is reloaded.
    let off = run_json(&ws, &["off"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&off, login)[0], "loom.nginx.site changed", "{off}");
        assert!(enabled(login).symlink_metadata().is_err() && available(login).exists());
    }
    assert_eq!(service.actions().len(), 5);
}

#[test]
fn services_under_systemd_go_through_systemctl() {
    if !sshd::is_root() {
        eprintln!("skipped: needs root, for a root login");
        return;
    }
    // No systemd runs here: `init: systemd` (what the `init` fact says on a systemd
    // node) sends the service type to a stand-in systemctl that keeps unit state in files.
    let fleet = Fleet::start(1);
    let units = fleet.shared_dir("units");
    let calls = units.join("calls");
    fleet.stand_in(
        "systemctl",
        &format!(
            "echo \"$*\" >> {calls}\nu={d}/\"$2\"\ncase \"$1\" in\n  \
             is-active) if [ -e \"$u.active\" ]; then echo active; else echo inactive; exit 3; fi ;;\n  \
             is-enabled) if [ -e \"$u.enabled\" ]; then echo enabled; else echo disabled; exit 1; fi ;;\n  \
             start|restart) touch \"$u.active\" ;;\n  stop) rm -f \"$u.active\" ;;\n  reload) ;;\n  \
             enable) touch \"$u.enabled\" ;;\n  disable) rm -f \"$u.enabled\" ;;\nesac",
            calls = calls.display(),
            d = units.display()
        ),
    );
    let ws = workspace(&fleet);
    let service = |state: &str| -> String {
        LOGINS
            .iter()
            .map(|login| {
                format!(
                    "      - service: {{name: app-{login}, state: {state}, enabled: true, init: systemd, {}}}\n",
                    on(login)
                )
            })
            .collect()
    };
    ws.write(
        "jobs/a.yaml",
        &format!(
            "jobs:\n  up:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{}  \
             bounce:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{}",
            service("running"),
            service("restarted")
        ),
    );
    let recorded = |login: &str| -> Vec<String> {
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(&format!(" app-{login}")))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    let first = run_json(&ws, &["up"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&first, login), ["service changed"], "{first}");
        assert_eq!(recorded(login), ["is-active", "is-enabled", "start", "enable"]);
    }
    let second = run_json(&ws, &["up"], 0);
    for login in LOGINS {
        assert_eq!(of_node(&second, login), ["service unchanged"], "{second}");
        assert_eq!(recorded(login).len(), 6, "{:?}", recorded(login));
    }
    // `restarted` is an action: a change at every run.
    for _ in 0..2 {
        let bounced = run_json(&ws, &["bounce"], 0);
        assert!(LOGINS.iter().all(|l| of_node(&bounced, l) == ["service changed"]), "{bounced}");
    }
    for login in LOGINS {
        assert_eq!(recorded(login).iter().filter(|c| *c == "restart").count(), 2);
    }
}

#[test]
fn bad_declarations_of_the_system_types_are_check_errors_at_their_place() {
    let ws = Workspace::local("");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  bad:\n    targets: [local]\n    resources:\n      \
         - service: {name: \"web; reboot\", state: running}\n      \
         - package: {name: curl, state: newest}\n      \
         - cron: {name: nightly}\n      \
         - mount: {path: /mnt/x, state: mounted}\n      \
         - loom.nginx.site: {name: ../escape}\n",
    );
    let check = ws.loom(&["check"]);
    check.assert_code(1);
    let all = check.all();
    for (line, what) in [
        (5, "is not a service name"),
        (6, "newest"),
        (7, "`job` (the command) is required"),
        (8, "'src' is required with state mounted"),
        (9, "is not a site name"),
    ] {
        assert!(all.contains(&format!("jobs/a.yaml:{line}:")), "line {line} ({what}) not reported:\n{all}");
        assert!(all.contains(what), "{what} not reported:\n{all}");
    }
}

/// Every resource type in one manifest, through a root login and a sudo login to one
/// node: one run converges it, and a second run finds everything unchanged and
/// writes no file.
#[test]
fn every_resource_type_converges_a_node_in_one_run() {
    let _apt = APT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !sshd::is_root() {
        eprintln!("skipped: needs root, for a root login, the system's accounts and dpkg");
        return;
    }
    let fleet = Fleet::start(1);
    let dir = fleet.shared_dir("every");
    // Names of their own: the other tests of this file run at the same time.
    let names: Vec<Names> = LOGINS
        .iter()
        .enumerate()
        .map(|(i, login)| {
            let mut n = Names::new(login, i as u32 + 500, &dir);
            let short = &login[..1];
            n.user = unique(&format!("le{short}u"));
            n.group = unique(&format!("le{short}g"));
            n.service = unique(&format!("loomtest-e{short}svc"));
            n
        })
        .collect();
    let mut accounts = Accounts::default();
    let mut scripts = Vec::new();
    let mut mounts = Vec::new();
    let mut repos = Vec::new();
    let mut resources = String::new();
    for (i, n) in names.iter().enumerate() {
        accounts.users.push(n.user.clone());
        accounts.groups.push(n.group.clone());
        scripts.push(InitScript::new(&n.service, &dir));
        mounts.push(MountPoint(n.mountpoint.clone()));
        std::fs::write(&n.fstab, "# a test fstab\n").unwrap();
        // Each login its own apt source and package: the two run at once on one machine.
        let source = unique(&format!("loom-test-every-{}-", n.login));
        let mut repo = AptRepo::new(fleet.path(&format!("repo-{i}")), &source);
        let package = unique(&format!("loomtest-e{}-", &n.login[..1]));
        repo.add(&package, "1.0");
        let when = format!("when: 'node == \"{}\"'", n.login);
        let files = dir.join(format!("files-{}", n.login));
        resources.push_str(&format!(
            "      - loom.debian.apt_source: {{name: {source}, lines: \"{line}\", {when}}}\n\
             \x20     - package: {{name: {package}, state: present, {when}}}\n\
             \x20     - directory: {{path: \"{f}\", mode: \"0755\", {when}}}\n\
             \x20     - file: {{path: \"{f}/app.conf\", content: \"port = 80\\n\", mode: \"0640\", {when}}}\n\
             \x20     - command: {{command: \"touch {f}/extra.conf\", creates: \"{f}/extra.conf\", {when}}}\n\
             \x20     - line: {{path: \"{f}/extra.conf\", line: \"debug = false\", {when}}}\n\
             \x20     - link: {{path: \"{f}/current\", target: \"{f}/app.conf\", {when}}}\n",
            line = repo.line(),
            f = files.display(),
        ));
        resources.push_str(&n.resources());
        repos.push((repo, package, files));
    }
    let ws = workspace(&fleet);
    ws.write(
        "jobs/a.yaml",
        &format!("jobs:\n  every:\n    targets: [asroot, viasudo]\n    sudo: true\n    resources:\n{resources}"),
    );
    let types = [
        "loom.debian.apt_source",
        "package",
        "directory",
        "file",
        "command",
        "line",
        "link",
        "group",
        "user",
        "authorized_key",
        "cron",
        "service",
        "mount",
    ];
    let first = run_json(&ws, &["every"], 0);
    for n in &names {
        let expected: Vec<String> = types.iter().map(|t| format!("{t} changed")).collect();
        assert_eq!(of_node(&first, n.login), expected, "{first}");
        assert!(n.mounted() && getent("passwd", &n.user).ends_with(":/bin/sh"));
    }
    for (_, package, files) in &repos {
        assert_eq!(installed_version(package).as_deref(), Some("1.0"));
        assert_eq!(std::fs::read_to_string(files.join("current")).unwrap(), "port = 80\n");
        assert_eq!(std::fs::read_to_string(files.join("extra.conf")).unwrap(), "debug = false\n");
    }
    let watched: Vec<String> = repos
        .iter()
        .flat_map(|(repo, _, files)| {
            [
                repo.list_file(),
                files.join("app.conf").display().to_string(),
                files.join("extra.conf").display().to_string(),
            ]
        })
        .chain(names.iter().flat_map(|n| [n.keys_file(), n.crontab_file(), n.fstab.display().to_string()]))
        .collect();
    let before: Vec<(u64, i64)> = watched.iter().map(|f| stamp(f)).collect();
    let second = run_json(&ws, &["every"], 0);
    for n in &names {
        let expected: Vec<String> = types.iter().map(|t| format!("{t} unchanged")).collect();
        assert_eq!(of_node(&second, n.login), expected, "{second}");
    }
    assert_eq!(watched.iter().map(|f| stamp(f)).collect::<Vec<_>>(), before, "a second run wrote one of {watched:?}");
    assert_no_change_command(&second);
}

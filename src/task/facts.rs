//! Facts about a node: what it runs, gathered once per node and fire in one command.
//!
//! One POSIX `sh` script prints `key=value` lines (the node needs no interpreter);
//! the handle caches the answer (`ssh.facts`), and the resource engine hands it to
//! `when:` conditions and templates. It reads, never changes, the node.

use rhai::{Dynamic, Map};

/// Prints one `key=value` line per fact.
pub(crate) const GATHER: &str = r#"
if [ -r /etc/os-release ]; then
  (. /etc/os-release; printf 'distribution=%s\nversion=%s\nlike=%s\n' "$ID" "$VERSION_ID" "$ID_LIKE")
else
  printf 'distribution=\nversion=\nlike=\n'
fi
pm=
for candidate in apt-get:apt dnf:dnf yum:yum apk:apk; do
  if command -v "${candidate%%:*}" >/dev/null 2>&1; then pm=${candidate#*:}; break; fi
done
if [ -d /run/systemd/system ]; then init=systemd
elif command -v openrc >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then init=openrc
else init=sysv; fi
uname -snrm | { read -r system hostname kernel arch; printf 'hostname=%s\nsystem=%s\narch=%s\nkernel=%s\n' "$hostname" "$system" "$arch" "$kernel"; }
printf 'package_manager=%s\ninit=%s\nhome=%s\n' "$pm" "$init" "$HOME"
LC_ALL=C id | { read -r ids _; uid=${ids#uid=}; user=${uid#*\(}; printf 'uid=%s\nuser=%s\n' "${uid%%\(*}" "${user%\)}"; }
"#;

/// The facts map from the script's output. `os_family` is derived from the
/// distribution and its `ID_LIKE`; `uid` is a number.
pub(crate) fn parse(output: &str) -> Map {
    let mut raw = std::collections::BTreeMap::new();
    for line in output.lines() {
        if let Some((key, value)) = line.split_once('=') {
            raw.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    let get = |key: &str| raw.get(key).cloned().unwrap_or_default();
    let family = os_family(&get("distribution"), &get("like"), &get("system"));
    let mut facts = Map::new();
    for key in ["hostname", "distribution", "version", "arch", "kernel", "package_manager", "init", "user", "home"] {
        facts.insert(key.into(), Dynamic::from(get(key)));
    }
    facts.insert("os_family".into(), Dynamic::from(family));
    let uid = get("uid").parse::<i64>().map(Dynamic::from_int).unwrap_or(Dynamic::UNIT);
    facts.insert("uid".into(), uid);
    facts
}

fn os_family(id: &str, like: &str, system: &str) -> String {
    let words: Vec<&str> = std::iter::once(id).chain(like.split_whitespace()).collect();
    let families = [
        ("debian", &["debian", "ubuntu"][..]),
        ("redhat", &["rhel", "fedora", "centos", "rocky", "almalinux"][..]),
        ("alpine", &["alpine"][..]),
        ("suse", &["suse", "opensuse", "sles"][..]),
        ("arch", &["arch"][..]),
    ];
    for (family, members) in families {
        if words.iter().any(|w| members.contains(w)) {
            return family.to_string();
        }
    }
    system.to_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn facts_are_parsed_and_the_family_derived() {
        let facts = super::parse(
            "hostname=web1\ndistribution=ubuntu\nversion=24.04\nlike=debian\nsystem=Linux\narch=x86_64\nkernel=6.1\npackage_manager=apt\ninit=systemd\nuser=deploy\nuid=1000\nhome=/home/deploy\n",
        );
        assert_eq!(facts["os_family"].clone().into_string().unwrap(), "debian");
        assert_eq!(facts["uid"].as_int().unwrap(), 1000);
        assert_eq!(facts["package_manager"].clone().into_string().unwrap(), "apt");
        let other = super::parse("distribution=\nlike=\nsystem=FreeBSD\nuid=x\n");
        assert_eq!(other["os_family"].clone().into_string().unwrap(), "freebsd");
        assert!(other["uid"].is_unit());
    }

    /// The `init` fact from the gathering script itself, on a fake root: systemd's
    /// runtime folder decides systemd (no systemd runs on the test machine), then an
    /// `openrc` on the PATH, else SysV.
    #[test]
    fn the_init_fact_is_systemd_when_its_runtime_folder_exists_then_openrc_then_sysv() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let init = |systemd: bool, openrc: bool| -> String {
            let root = dir.path().join(format!("{systemd}-{openrc}"));
            let bin = root.join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let runtime = root.join("run/systemd/system");
            if systemd {
                std::fs::create_dir_all(&runtime).unwrap();
            }
            if openrc {
                std::fs::write(bin.join("openrc"), "#!/bin/sh\n").unwrap();
                std::fs::set_permissions(bin.join("openrc"), std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            assert!(super::GATHER.contains("[ -d /run/systemd/system ]"), "the test no longer matches the script");
            let script = super::GATHER.replace("/run/systemd/system", &runtime.display().to_string());
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
                .output()
                .unwrap();
            super::parse(&String::from_utf8_lossy(&out.stdout))["init"].clone().into_string().unwrap()
        };
        assert_eq!(init(true, true), "systemd");
        assert_eq!(init(true, false), "systemd");
        if !std::path::Path::new("/sbin/openrc-run").exists() {
            assert_eq!(init(false, true), "openrc");
            assert_eq!(init(false, false), "sysv");
        }
    }
}

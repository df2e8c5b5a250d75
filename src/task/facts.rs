//! Facts about a node: what it runs, gathered once per node and fire in one command.
//!
//! One POSIX `sh` script prints `key=value` lines (the node needs no interpreter);
//! the handle caches the answer (`ssh.facts`), and the resource engine hands it to
//! `when:` conditions and templates. It reads, never changes, the node.

use rhai::{Dynamic, Map};

/// Prints one `key=value` line per fact.
pub(crate) const GATHER: &str = r#"
id=; version=; like=
if [ -r /etc/os-release ]; then
  id=$(. /etc/os-release; printf %s "$ID"); version=$(. /etc/os-release; printf %s "$VERSION_ID"); like=$(. /etc/os-release; printf %s "$ID_LIKE")
fi
pm=
for candidate in apt-get:apt dnf:dnf yum:yum apk:apk; do
  if command -v "${candidate%%:*}" >/dev/null 2>&1; then pm=${candidate#*:}; break; fi
done
if [ -d /run/systemd/system ]; then init=systemd
elif command -v openrc >/dev/null 2>&1 || [ -x /sbin/openrc-run ]; then init=openrc
else init=sysv; fi
printf 'hostname=%s\n' "$(hostname 2>/dev/null || uname -n)"
printf 'distribution=%s\nversion=%s\nlike=%s\n' "$id" "$version" "$like"
printf 'system=%s\narch=%s\nkernel=%s\n' "$(uname -s)" "$(uname -m)" "$(uname -r)"
printf 'package_manager=%s\ninit=%s\n' "$pm" "$init"
printf 'user=%s\nuid=%s\nhome=%s\n' "$(id -un)" "$(id -u)" "$HOME"
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
}

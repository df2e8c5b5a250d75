//! Manual pages: `loom man --out DIR` writes loom(1), a page per subcommand and
//! loom.yaml(5); each renders with `man -l` without a warning, and loom.yaml(5)
//! describes every key of the README's configuration reference.

use std::process::Command;

use crate::harness::{loom, repo_root};

/// The subcommands `loom --help` lists.
fn subcommands() -> Vec<String> {
    let help = loom(&["--help"]);
    help.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_page_is_written_and_renders_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    loom(&["man", "--out", out.to_str().unwrap()]).assert_code(0);
    let mut expected: Vec<String> = subcommands().iter().map(|s| format!("loom-{s}.1")).collect();
    assert!(expected.len() >= 15, "{expected:?}");
    expected.extend(["loom.1".to_string(), "loom.yaml.5".to_string()]);
    expected.sort();
    let mut written: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    written.sort();
    assert_eq!(written, expected);

    for page in &written {
        let rendered = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(out.join(page))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .expect("man (Debian package man-db; .ci/run installs it)");
        // Bold and underline come as overstrikes ("N\x08N"): keep the last of each.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&rendered.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        let warnings = String::from_utf8_lossy(&rendered.stderr);
        assert!(rendered.status.success() && warnings.trim().is_empty(), "man -l {page}:\n{warnings}");
        assert!(text.contains("NAME"), "{page}:\n{text}");
    }
    let serve = std::fs::read_to_string(out.join("loom-serve.1")).unwrap();
    assert!(serve.contains("Run the daemon in the foreground"), "{serve}");
}

#[test]
fn loom_yaml_5_describes_every_key_of_the_readme() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let page = std::fs::read_to_string(repo_root().join("dist/man/loom.yaml.5")).unwrap();
    let section = |start: &str| -> String {
        readme.split(start).nth(1).unwrap().split("\n### ").next().unwrap().split("\n## ").next().unwrap().to_string()
    };
    // The main file's table: "| `key` | meaning | default |".
    let mut keys: Vec<String> = section("### Main file")
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next().map(str::to_string))
        .collect();
    // The YAML examples of SSH, nodes and jobs: "  key: value  # comment", at the
    // depth of the settings (not of the node and job names).
    for (start, indent) in [("### SSH", "  "), ("### Nodes", "  "), ("### Jobs", "    ")] {
        let text = section(start);
        let block = text.split("```yaml").nth(1).unwrap().split("```").next().unwrap();
        keys.extend(block.lines().filter_map(|l| {
            let l = l.strip_prefix(indent).filter(|l| !l.starts_with(' '))?;
            let (key, _) = l.split_once(':')?;
            key.chars().all(|c| c.is_ascii_lowercase() || c == '_').then(|| key.to_string())
        }));
    }
    keys.sort();
    keys.dedup();
    assert!(keys.len() > 40 && keys.contains(&"never_fires".to_string()), "{keys:?}");
    let missing: Vec<&String> = keys.iter().filter(|key| !page.contains(&format!(".B {key}\n"))).collect();
    assert!(missing.is_empty(), "loom.yaml(5) lacks {missing:?}");
}

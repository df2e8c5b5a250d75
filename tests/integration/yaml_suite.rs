//! A sample of the official YAML test suite (tests/data/yaml-test-suite, see its
//! README) through a job's `kwargs`: a valid document passes `loom check` and reaches
//! the task as the suite's JSON says; an invalid one is a check error with a position
//! in the manifest.

use std::path::PathBuf;

use crate::harness::{Workspace, repo_root};

struct Case {
    id: String,
    yaml: String,
    json: Option<serde_json::Value>,
}

fn cases() -> Vec<Case> {
    let root = repo_root().join("tests/data/yaml-test-suite");
    let mut cases: Vec<Case> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let dir: PathBuf = e.path();
            let json = std::fs::read_to_string(dir.join("in.json")).ok().map(|t| serde_json::from_str(&t).unwrap());
            Case {
                id: e.file_name().to_string_lossy().into_owned(),
                yaml: std::fs::read_to_string(dir.join("in.yaml")).unwrap(),
                json,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.id.cmp(&b.id));
    cases
}

/// A manifest whose job passes the document as `kwargs.v`.
fn manifest(case: &Case, out: &std::path::Path) -> String {
    let indented: String =
        case.yaml.lines().map(|l| if l.is_empty() { "\n".to_string() } else { format!("        {l}\n") }).collect();
    format!(
        "jobs:\n  c{id}:\n    task: suite.dump.apply\n    targets: [local]\n    kwargs:\n      out: \"{out}\"\n      v:\n{indented}",
        id = case.id,
        out = out.display()
    )
}

/// Numbers compare by value (the suite writes `1.0` where a task may print `1.0` or `1`).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
        (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

#[test]
fn valid_documents_reach_the_task_as_the_suite_says() {
    let ws = Workspace::local("");
    ws.write(
        "tasks/suite/dump.rhai",
        "fn apply(ssh, opts) {\n  let m = #{ v: opts.v };\n  ssh.put_text(m.to_json(), opts.out);\n}\n",
    );
    let valid: Vec<Case> = cases().into_iter().filter(|c| c.json.is_some()).collect();
    assert_eq!(valid.len(), 40);
    for case in &valid {
        ws.write(&format!("jobs/{}.yaml", case.id), &manifest(case, &ws.path(&format!("out/{}.json", case.id))));
    }
    std::fs::create_dir_all(ws.path("out")).unwrap();
    let check = ws.loom(&["check"]);
    assert_eq!(check.code, Some(0), "{}", check.stderr);
    let mut wrong = Vec::new();
    for case in &valid {
        let run = ws.loom(&["run", &format!("c{}", case.id)]);
        if run.code != Some(0) {
            wrong.push(format!("{}: run failed: {}", case.id, run.all()));
            continue;
        }
        let got: serde_json::Value = serde_json::from_str(&ws.read(&format!("out/{}.json", case.id))).unwrap();
        let expected = case.json.clone().unwrap();
        if !same(&got["v"], &expected) {
            wrong.push(format!("{}: got {} expected {}", case.id, got["v"], expected));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn invalid_documents_are_check_errors_with_a_position() {
    let ws = Workspace::local("");
    ws.write("tasks/suite/dump.rhai", "fn apply(ssh, opts) { }\n");
    let invalid: Vec<Case> = cases().into_iter().filter(|c| c.json.is_none()).collect();
    assert_eq!(invalid.len(), 20);
    for case in &invalid {
        ws.write(&format!("jobs/{}.yaml", case.id), &manifest(case, &ws.path("out.json")));
    }
    let check = ws.loom(&["check"]);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    let missing: Vec<&str> = invalid
        .iter()
        .filter(|c| !check.stderr.contains(&format!("jobs/{}.yaml:", c.id)))
        .map(|c| c.id.as_str())
        .collect();
    assert!(missing.is_empty(), "accepted although invalid: {missing:?}\n{}", check.stderr);
}

#[test]
fn the_issues_examples_reach_the_task_unchanged_or_are_errors_at_their_place() {
    let ws = Workspace::local("");
    ws.write(
        "tasks/suite/dump.rhai",
        "fn apply(ssh, opts) {\n  let m = #{ v: opts.v };\n  ssh.put_text(m.to_json(), opts.out);\n}\n",
    );
    let out = ws.path("out.json");
    let job = |v: &str| {
        format!(
            "jobs:\n  j:\n    task: suite.dump.apply\n    targets: [local]\n    kwargs:\n      out: \"{}\"\n      v: {v}\n",
            out.display()
        )
    };
    ws.write("jobs/a.yaml", &job("{y: 1, n: 2, on: 3, yes: 5, Y: 7, mode: 0755, big: 9223372036854775807}"));
    ws.loom(&["run", "j"]).assert_code(0);
    let got: serde_json::Value = serde_json::from_str(&ws.read("out.json")).unwrap();
    assert_eq!(
        got["v"],
        serde_json::json!({"y": 1, "n": 2, "on": 3, "yes": 5, "Y": 7, "mode": "0755", "big": 9223372036854775807i64})
    );
    for (value, column, message) in [
        ("[9223372036854775808]", 11, "integer out of range"),
        ("{[a, b]: 1}", 11, "a map key must be text or a number, not a list"),
        ("{~: 1}", 11, "a map key must be text or a number, not nothing"),
        ("{1: a, \"1\": b}", 17, "map key `1` appears twice once keys are read as text"),
    ] {
        ws.write("jobs/a.yaml", &job(value));
        let run = ws.loom(&["check"]);
        run.assert_code(1);
        assert!(run.stderr.contains(message), "{value}: {}", run.stderr);
        assert!(run.stderr.contains(&format!("jobs/a.yaml:7:{column}")), "{value}: {}", run.stderr);
    }
}

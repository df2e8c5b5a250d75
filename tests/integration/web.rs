//! The web interface in a real browser (Debian's Chromium, headless, over
//! WebDriver) against the real `loom serve` with real sshd nodes: signing in,
//! the jobs, running one and watching its output arrive, disabling a job for good,
//! a failed node in red with its stderr, a read token refused every action. Every
//! page is saved as a screenshot (light and dark, desktop and phone width) into
//! `target/web-screenshots/`, and axe-core, run inside each page, must find no
//! serious or critical accessibility violation.
//!
//! One daemon and one browser serve the whole scenario: starting Chromium is the
//! slow part.

use fantoccini::Locator;
use serde_json::Value;

use crate::harness::browser::Browser;
use crate::harness::sshd::{Fleet, is_root};
use crate::harness::{Workspace, http, repo_root};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef";
const AXE: &str = include_str!("../data/axe-core/axe.min.js");

/// The pages, each with the fragment that opens it.
fn pages(broken: i64) -> Vec<(&'static str, String)> {
    vec![
        ("dashboard", "#/".to_string()),
        ("jobs", "#/jobs".to_string()),
        ("history", "#/jobs/hello".to_string()),
        ("fire", format!("#/fires/{broken}")),
        ("nodes", "#/nodes".to_string()),
    ]
}

#[test]
fn the_web_interface_shows_runs_and_guards_the_fleet() {
    if !is_root() {
        eprintln!("skipped: the sshd nodes need root");
        return;
    }
    let fleet = Fleet::start(2);
    let gate = fleet.shared_dir("gate").join("open");
    let ws = Workspace::new(
        &format!(
            "{}tokens:\n  - {{token: {ADMIN}, role: admin}}\n  - {{token: {READER}, role: read}}\n",
            fleet.ssh_settings("strict")
        ),
        &fleet.nodes_yaml(),
    );
    let folder = gate.parent().unwrap().display();
    // hello: one command, whose first line must show while it still waits for the gate.
    // waits: n01 ends at once, n02 waits until the fleet is gone (or the fire is cancelled).
    ws.write(
        "tasks/site/web.rhai",
        &format!(
            "fn hello(ssh) {{\n  ssh.run(`printf '\\033[32mhello\\033[0m from %s\\n' ${{ssh.node}}; while [ ! -e {} ] && [ -d {folder} ]; do sleep 0.05; done; echo finished`);\n}}\n\
             fn waits(ssh) {{\n  if ssh.node == \"n02\" {{ ssh.run(`while [ -d {folder} ]; do sleep 0.05; done`); }}\n}}\n",
            gate.display(),
        ),
    );
    ws.write(
        "jobs/web.yaml",
        "jobs:\n  hello:\n    task: site.web.hello\n    targets: [n01, n02]\n    description: waits for the test's gate\n  \
         broken:\n    task: loom.system.run\n    args: [\"echo boom-on-stderr >&2; exit 3\"]\n    targets: [n01]\n  \
         nightly:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"0 3 * * *\"\n    targets: [n01, n02]\n  \
         waits:\n    task: site.web.waits\n    targets: [n01, n02]\n",
    );
    let managed = fleet.shared_dir("managed").join("motd");
    ws.write(
        "jobs/resources.yaml",
        &format!(
            "jobs:\n  converge:\n    targets: [n01]\n    resources:\n      - file: {{path: {}, content: \"declared\\n\"}}\n",
            managed.display()
        ),
    );
    let server = ws.server();
    let api = format!("{server}/api/v1");
    let daemon = ws.serve();
    daemon.wait_started();
    let (code, broken) = http("POST", &format!("{api}/jobs/broken/run?wait=true"), Some(ADMIN), None);
    assert_eq!((code, broken["fire"]["status"].as_str()), (200, Some("failed")), "{broken}");
    let broken = broken["fire"]["id"].as_i64().unwrap();

    let browser = Browser::start();
    let c = &browser.client;

    // Signing in: a wrong token is refused on the page, the right one kept for the session.
    browser.step(async {
        c.goto(&format!("{server}/")).await.unwrap();
        let field = c.wait().for_element(Locator::Css("#token")).await.unwrap();
        field.send_keys("not-a-token-0123456789").await.unwrap();
        c.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
        browser.until("the refusal", "return !!document.querySelector('[role=alert]')").await;
        let alert = c.find(Locator::Css("[role=alert]")).await.unwrap().text().await.unwrap();
        assert!(alert.contains("not valid"), "{alert}");
        field.clear().await.unwrap();
        field.send_keys(ADMIN).await.unwrap();
        browser
            .then_rendered("dashboard", async {
                c.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
            })
            .await;
        let text = browser.script("return document.querySelector('main').innerText").await;
        let text = text.as_str().unwrap();
        assert!(text.contains("Recent failures") && text.contains(&format!("broken #{broken}")), "{text}");
        assert!(text.contains("nightly"), "the next fires: {text}");
    });

    // The jobs, in cron and in words; run one now and watch its output arrive live.
    browser.step(async {
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        let row = c.find(Locator::Css("tr[data-job=nightly]")).await.unwrap().text().await.unwrap();
        assert!(row.contains("0 3 * * *") && row.contains("At 03:00."), "{row}");
        let broken_row = c.find(Locator::Css("tr[data-job=broken] .cell.s-failed")).await;
        assert!(broken_row.is_ok(), "the broken job's last result shows a failed cell");
        browser
            .then_rendered("fire", async {
                c.find(Locator::Css("tr[data-job=hello] .run button")).await.unwrap().click().await.unwrap();
            })
            .await;
        browser
            .until(
                "live output from both nodes while the fire runs",
                "return ['n01','n02'].every(n => (document.querySelector(`[data-node=${n}] .output`)||{}).textContent?.includes('hello from ' + n))",
            )
            .await;
        let badge = c.find(Locator::Css("h1 .badge")).await.unwrap().text().await.unwrap();
        assert_eq!(badge, "running", "the output arrived before the fire ended");
        let green = browser.script("return getComputedStyle(document.querySelector('[data-node=n01] .output .ansi-fg2')).color").await;
        assert_eq!(green, "rgb(86, 211, 100)", "ANSI green is rendered as colour, not as escape codes");
        std::fs::write(&gate, "").unwrap();
        browser.until("the fire end", "return document.querySelector('h1 .badge')?.textContent === 'ok'").await;
        let output = c.find(Locator::Css("[data-node=n02] .output")).await.unwrap().text().await.unwrap();
        assert!(output.contains("finished"), "{output}");
    });

    // Search narrows the jobs; a run on chosen nodes runs on those only.
    browser.step(async {
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        c.find(Locator::Css("#job-search")).await.unwrap().send_keys("hell").await.unwrap();
        browser.until("one job left", "return document.querySelectorAll('tr[data-job]').length === 1").await;
        assert!(c.find(Locator::Css("tr[data-job=hello]")).await.is_ok(), "the search kept the wrong job");
        c.find(Locator::Css("tr[data-job=hello] .run summary")).await.unwrap().click().await.unwrap();
        let n02 = Locator::XPath("//tr[@data-job='hello']//label[contains(., 'n02')]/input");
        c.find(n02).await.unwrap().click().await.unwrap();
        browser
            .then_rendered("fire", async {
                let chosen = Locator::XPath("//tr[@data-job='hello']//button[normalize-space(.)='Run on 1 chosen']");
                c.find(chosen).await.unwrap().click().await.unwrap();
            })
            .await;
        browser.until("the fire end", "return document.querySelector('h1 .badge')?.textContent === 'ok'").await;
        assert!(c.find(Locator::Css("[data-node=n02]")).await.is_ok());
        assert!(c.find(Locator::Css("[data-node=n01]")).await.is_err(), "a node that was not chosen ran");
    });

    // A running fire: the dashboard shows how many of its nodes are done, and its
    // page cancels it.
    browser.step(async {
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        browser
            .then_rendered("fire", async {
                c.find(Locator::Css("tr[data-job=waits] .run button")).await.unwrap().click().await.unwrap();
            })
            .await;
        browser
            .until("n01 done", "return document.querySelector('[data-node=n01] h2 .badge')?.textContent === 'ok'")
            .await;
        let fire = browser.script("return location.hash").await;
        browser.open(&format!("{server}/#/"), "dashboard").await;
        browser
            .until(
                "the progress of the running fire",
                "return [...document.querySelectorAll('.running-fire')].some(li => li.textContent.includes('waits') && li.textContent.includes('1 of 2 nodes done'))",
            )
            .await;
        browser.open(&format!("{server}/{}", fire.as_str().unwrap()), "fire").await;
        c.find(Locator::XPath("//button[text()='Cancel fire']")).await.unwrap().click().await.unwrap();
        browser
            .until("the fire interrupted", "return document.querySelector('h1 .badge')?.textContent === 'interrupted'")
            .await;
        let badge = c.find(Locator::Css("[data-node=n02] h2 .badge")).await.unwrap().text().await.unwrap();
        assert_eq!(badge, "interrupted");
    });

    // The nodes: where each is, how it logs in (never a secret), its master, its last result.
    browser.step(async {
        browser.open(&format!("{server}/#/nodes"), "nodes").await;
        let row = c.find(Locator::Css("tr[data-node=n01]")).await.unwrap().text().await.unwrap();
        let address =
            format!("{}@{}:{}", crate::harness::sshd::key_user(), fleet.node("n01").address, fleet.node("n01").port);
        assert!(row.contains(&address) && row.contains("identity") && row.contains("open"), "{row}");
        assert!(row.contains("ok") || row.contains("failed") || row.contains("drift"), "no last result: {row}");
    });

    // A reload that fails shows on the dashboard, where the error is, until a good one.
    ws.write(
        "jobs/bad.yaml",
        "jobs:\n  bad:\n    task: loom.system.run\n    schedule: \"61 * * * *\"\n    targets: [n01]\n",
    );
    assert_eq!(http("POST", &format!("{api}/reload"), Some(ADMIN), None).0, 200);
    browser.step(async {
        browser.open(&format!("{server}/#/"), "dashboard").await;
        let panel = c.find(Locator::Css("[aria-labelledby=reload-errors]")).await.unwrap().text().await.unwrap();
        assert!(panel.contains("jobs/bad.yaml:4:") && panel.contains("61 * * * *"), "{panel}");
        let state = c.find(Locator::Css(".facts .badge")).await.unwrap().text().await.unwrap();
        assert_eq!(state, "running; the last reload failed");
    });
    std::fs::remove_file(ws.path("jobs/bad.yaml")).unwrap();
    assert_eq!(http("POST", &format!("{api}/reload"), Some(ADMIN), None).0, 200);
    browser.step(async {
        browser.open(&format!("{server}/#/"), "dashboard").await;
        assert!(
            c.find(Locator::Css("[aria-labelledby=reload-errors]")).await.is_err(),
            "the error outlived a good reload"
        );
    });

    // A job's history: the heatmap has a cell per node and fire.
    browser.step(async {
        browser.open(&format!("{server}/#/jobs/hello"), "history").await;
        let cells = browser.script("return document.querySelectorAll('table.heatmap td.hm.s-ok').length").await;
        assert_eq!(cells, 3, "hello: two nodes, then n02 alone, all ok");
        assert!(c.find(Locator::Css("figure svg")).await.is_ok(), "the durations chart");
    });

    // A failed node is red, with its stderr.
    browser.step(async {
        browser.open(&format!("{server}/#/fires/{broken}"), "fire").await;
        let section = c.find(Locator::Css("[data-node=n01]")).await.unwrap();
        assert!(section.attr("class").await.unwrap().unwrap().contains("s-border-failed"));
        assert!(section.text().await.unwrap().contains("boom-on-stderr"));
        let border = section.css_value("border-left-color").await.unwrap();
        assert_eq!(border, "rgba(207, 34, 46, 1)", "the failed node is marked red");
        let badge = c.find(Locator::Css("[data-node=n01] h2 .badge")).await.unwrap().text().await.unwrap();
        assert_eq!(badge, "failed");
    });

    // Check mode from the jobs page: the fire page shows each resource with its diff,
    // and the node is left alone.
    browser.step(async {
        std::fs::write(&managed, "edited\n").unwrap();
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        assert!(c.find(Locator::Css("tr[data-job=hello] .run button[aria-label^=Check]")).await.is_err());
        browser
            .then_rendered("fire", async {
                let check = c.find(Locator::Css("tr[data-job=converge] .run button[aria-label^=Check]")).await.unwrap();
                check.click().await.unwrap();
            })
            .await;
        browser.until("the check's end", "return document.querySelector('h1 .badge')?.textContent === 'drift'").await;
        browser.until("its resources", "return !!document.querySelector('[data-node=n01] table.resources')").await;
        let table = c.find(Locator::Css("[data-node=n01] table.resources")).await.unwrap().text().await.unwrap();
        assert!(table.contains("changed") && table.contains("-edited") && table.contains("+declared"), "{table}");
        assert_eq!(std::fs::read_to_string(&managed).unwrap(), "edited\n", "check mode changed the node");
    });

    // Disabling a job holds across a reload of the page (and of the daemon's view).
    browser.step(async {
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        let switch = c.find(Locator::Css("tr[data-job=nightly] input[role=switch]")).await.unwrap();
        assert!(switch.is_selected().await.unwrap());
        switch.click().await.unwrap();
        browser
            .until(
                "the switch off",
                "return document.querySelector('tr[data-job=nightly] input[role=switch]').checked === false",
            )
            .await;
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        let switch = c.find(Locator::Css("tr[data-job=nightly] input[role=switch]")).await.unwrap();
        assert!(!switch.is_selected().await.unwrap(), "nightly is enabled again after a reload");
    });
    let (_, nightly) = http("GET", &format!("{api}/jobs/nightly"), Some(READER), None);
    assert_eq!(nightly["enabled"], false, "{nightly}");

    // Every page, light and dark, desktop and phone width: a screenshot each, and no
    // serious accessibility violation.
    let shots = repo_root().join("target/web-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    browser.step(async {
        for theme in ["light", "dark"] {
            browser.script(&format!("localStorage.setItem('loom.theme', '{theme}')")).await;
            for (size, width, height) in [("desktop", 1280, 900), ("phone", 390, 844)] {
                c.set_window_size(width, height).await.unwrap();
                for (page, fragment) in pages(broken) {
                    browser.open(&format!("{server}/{fragment}"), page).await;
                    let png = c.screenshot().await.unwrap();
                    std::fs::write(shots.join(format!("{page}-{theme}-{size}.png")), png).unwrap();
                    let violations = axe(&browser).await;
                    assert!(violations.is_empty(), "{page} ({theme}, {size}): {violations:#?}");
                }
            }
        }
        c.set_window_size(1280, 900).await.unwrap();
        browser.script("localStorage.removeItem('loom.theme')").await;
    });

    // A read token: no action buttons, and the API refuses actions anyway.
    browser.step(async {
        browser.open(&format!("{server}/#/jobs"), "jobs").await;
        c.find(Locator::XPath("//button[text()='Sign out']")).await.unwrap().click().await.unwrap();
        let field = c.wait().for_element(Locator::Css("#token")).await.unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(shots.join("signin-light-desktop.png"), png).unwrap();
        assert!(axe(&browser).await.is_empty(), "the sign-in page has accessibility violations");
        field.send_keys(READER).await.unwrap();
        browser
            .then_rendered("jobs", async {
                c.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
            })
            .await;
        let buttons = c.find_all(Locator::Css("main .run button, main button.danger")).await.unwrap();
        assert!(buttons.is_empty(), "a read token sees no action buttons");
        let switch = c.find(Locator::Css("tr[data-job=nightly] input[role=switch]")).await.unwrap();
        assert!(!switch.is_enabled().await.unwrap(), "a read token's enabled switch is read-only");
        browser.open(&format!("{server}/#/jobs/hello"), "history").await;
        assert!(c.find_all(Locator::Css("main .run button")).await.unwrap().is_empty());
        let refused = c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/api/v1/jobs/nightly/enable', {method: 'POST', headers: {Authorization: 'Bearer ' + sessionStorage.getItem('loom.token')}})
                   .then(r => r.json().then(body => done([r.status, body.error])));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(refused[0], 403, "{refused}");
    });
    drop(browser);
    daemon.stop();
}

/// axe-core's serious and critical violations on the page as it is now.
async fn axe(browser: &Browser) -> Vec<String> {
    let c = &browser.client;
    if browser.script("return typeof window.axe").await != "object" {
        c.execute(AXE, vec![]).await.unwrap();
    }
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
               .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => `${v.id}: ${v.help} at ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')}`)))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    match found {
        Value::Array(items) => items.into_iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
        other => vec![format!("unexpected answer from axe: {other}")],
    }
}

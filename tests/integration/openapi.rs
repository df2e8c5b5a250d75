//! The API answers as its served OpenAPI document says: every endpoint's real
//! answers, successes and errors, have a status the document lists for that
//! operation and a body that matches the schema it gives (JSON Schema 2020-12, as
//! OpenAPI 3.1 uses, its `$ref`s resolved into the document's components).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Workspace, wait_for};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef";

/// One answer: status, content type and body text.
struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

/// A request with a raw body (`body` with its content type), so malformed ones can be sent.
fn send(method: &str, url: &str, token: Option<&str>, body: Option<(&str, &str)>) -> Answer {
    send_headers(method, url, token, body, &[])
}

fn send_headers(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> Answer {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().request(method.parse().unwrap(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, text)) = body {
            request = request.header("content-type", content_type).body(text.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let text = if content_type.starts_with("text/event-stream") {
            // A stream does not end: read until its first complete event.
            let mut text = String::new();
            while !text.contains("\n\n") {
                let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk()).await;
                match chunk {
                    Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
                    _ => break,
                }
            }
            text
        } else {
            response.text().await.unwrap()
        };
        Answer { status, content_type, text }
    })
}

/// The document's checker for the answers of one running daemon.
struct Contract {
    document: Value,
    /// Every (operation, status) seen, to show each operation was exercised.
    seen: Vec<(String, String, u16)>,
}

impl Contract {
    /// Asserts that `answer` to `method template` is documented and matches its schema.
    fn check(&mut self, method: &str, template: &str, answer: &Answer) {
        let operation = &self.document["paths"][template][method.to_lowercase()];
        assert!(operation.is_object(), "{method} {template} is not in the document");
        let response = &operation["responses"][answer.status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template} answered {} which the document does not list: {}",
            answer.status,
            answer.text
        );
        let content = response["content"].as_object().expect("every documented answer has a body");
        let media = answer.content_type.split(';').next().unwrap().trim();
        let schema = &content
            .get(media)
            .unwrap_or_else(|| panic!("{method} {template} {}: content type {media} is not documented", answer.status))
            ["schema"];
        let bodies: Vec<Value> = if media == "text/event-stream" {
            let data: Vec<Value> = answer
                .text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| serde_json::from_str(data.trim()).unwrap())
                .collect();
            assert!(!data.is_empty(), "{method} {template}: no event in {:?}", answer.text);
            data
        } else {
            vec![
                serde_json::from_str(&answer.text)
                    .unwrap_or_else(|e| panic!("{method} {template}: {e}: {}", answer.text)),
            ]
        };
        let mut root = schema.clone();
        root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
        root["components"] = self.document["components"].clone();
        let validator = jsonschema::validator_for(&root).unwrap_or_else(|e| panic!("{method} {template}: {e}"));
        for body in &bodies {
            let errors: Vec<String> =
                validator.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path())).collect();
            assert!(
                errors.is_empty(),
                "{method} {template} {}: {body} does not match {schema}: {errors:?}",
                answer.status
            );
        }
        self.seen.push((method.to_string(), template.to_string(), answer.status));
    }
}

fn workspace() -> Workspace {
    let ws = Workspace::new(
        &format!("tokens:\n  - {{token: {ADMIN}, role: admin}}\n  - {{token: {READER}, role: read}}\n"),
        "local:\n  local: true\n",
    );
    ws.write("tasks/site/t.rhai", "fn slow(ssh) { ssh.run(\"sleep 30\"); }\nfn note(ssh, event) { }\n");
    ws.write(
        "jobs/a.yaml",
        "jobs:\n  hello:\n    task: loom.system.run\n    args: [\"echo hello\"]\n    description: says hello\n    targets: [local]\n    \
         notifications: [{on: [success], task: site.t.note}]\n  \
         slow:\n    task: site.t.slow\n    targets: [local]\n  \
         daily:\n    task: loom.system.run\n    args: [\"true\"]\n    schedule: \"0 3 * * *\"\n    targets: [local]\n",
    );
    let managed = ws.path("managed.txt");
    ws.write(
        "jobs/b.yaml",
        &format!(
            "jobs:\n  converge:\n    targets: [local]\n    resources:\n      - file: {{path: {}, content: x}}\n",
            managed.display()
        ),
    );
    ws
}

#[test]
fn every_endpoint_answers_as_the_served_document_says() {
    let ws = workspace();
    let api = format!("{}/api/v1", ws.server());
    let daemon = ws.serve();
    daemon.wait_started();

    // The document needs no token.
    let served = send("GET", &format!("{api}/openapi.json"), None, None);
    assert_eq!(served.status, 200, "{}", served.text);
    let document: Value = serde_json::from_str(&served.text).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    // utoipa takes it from Cargo.toml, as the package's LICENSE file.
    assert_eq!(document["info"]["license"]["identifier"], "MIT", "{}", document["info"]);
    let mut ids: Vec<&str> = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values().map(|op| op["operationId"].as_str().unwrap()))
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids are unique: {ids:?}");
    assert_eq!(
        document["components"]["schemas"]["Lagged"]["properties"]["type"]["$ref"],
        "#/components/schemas/LaggedKind"
    );
    // The checker itself rejects a body that does not match.
    let mut error = json!({ "$ref": "#/components/schemas/Error" });
    error["components"] = document["components"].clone();
    let validator = jsonschema::validator_for(&error).unwrap();
    assert!(validator.is_valid(&json!({ "error": "x" })) && !validator.is_valid(&json!({ "error": 5 })));
    let mut contract = Contract { document, seen: Vec::new() };
    let operations: Vec<(String, String)> = contract.document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(template, item)| {
            item.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), template.clone()))
        })
        .collect();
    let json_body = |text| Some(("application/json", text));
    let mut call = |method: &str, path: &str, template: &str, token: Option<&str>, body: Option<(&str, &str)>| {
        let answer = send(method, &format!("{api}{path}"), token, body);
        if answer.status >= 400 {
            assert!(answer.content_type.starts_with("application/json"), "{method} {path}: {}", answer.content_type);
        }
        contract.check(method, template, &answer);
        (answer.status, serde_json::from_str::<Value>(&answer.text).unwrap_or(Value::Null))
    };

    // Successes, with both nullable and filled fields (a job never run has `last: null`).
    assert_eq!(call("GET", "/status", "/status", Some(READER), None).0, 200);
    assert_eq!(call("GET", "/nodes", "/nodes", Some(READER), None).0, 200);
    assert_eq!(call("GET", "/jobs", "/jobs", Some(READER), None).0, 200);
    assert_eq!(call("GET", "/jobs/daily", "/jobs/{name}", Some(READER), None).0, 200);
    let (status, started) = call("POST", "/jobs/hello/run", "/jobs/{name}/run", Some(ADMIN), None);
    assert_eq!(status, 202, "{started}");
    let fire = started["fire"].as_i64().unwrap();
    assert_eq!(call("POST", "/jobs/hello/run", "/jobs/{name}/run", Some(ADMIN), json_body("null")).0, 202);
    assert_eq!(call("GET", &format!("/fires/{fire}?wait=true"), "/fires/{id}", Some(READER), None).0, 200);
    let (status, done) = call(
        "POST",
        "/jobs/hello/run?wait=true",
        "/jobs/{name}/run",
        Some(ADMIN),
        json_body(r#"{"nodes": ["local"]}"#),
    );
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["fire"]["status"], "ok", "{done}");
    assert_eq!(call("GET", "/jobs/hello", "/jobs/{name}", Some(READER), None).0, 200);
    assert_eq!(call("GET", "/fires?job=hello&limit=5&failed=false", "/fires", Some(READER), None).0, 200);
    // Notifications, one delivered with its attempt (the others may still be pending).
    assert!(wait_for(Duration::from_secs(20), || {
        send("GET", &format!("{api}/notifications?job=hello"), Some(READER), None).text.contains("\"delivered\"")
    }));
    let (status, listed) = call("GET", "/notifications?job=hello&limit=5", "/notifications", Some(READER), None);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed[0]["kind"], "task", "{listed}");
    let (status, page) = call("GET", &format!("/fires?job=hello&before={fire}"), "/fires", Some(READER), None);
    assert_eq!((status, page.as_array().map(Vec::len)), (200, Some(0)), "nothing before the first fire: {page}");
    let (status, cells) = call("GET", &format!("/fires/cells?ids={fire},{fire}"), "/fires/cells", Some(READER), None);
    assert_eq!((status, cells[0]["node"].as_str()), (200, Some("local")), "{cells}");
    let (status, nodes) = call("GET", "/nodes", "/nodes", Some(READER), None);
    assert_eq!((status, nodes[0]["last"]["status"].as_str()), (200, Some("ok")), "{nodes}");
    let (status, me) = call("GET", "/whoami", "/whoami", Some(READER), None);
    assert_eq!((status, me["role"].as_str()), (200, Some("read")), "{me}");
    assert_eq!(call("GET", "/whoami", "/whoami", Some(ADMIN), None).1["role"], "admin");
    // A job with resources only, checked: its results carry the resources' outcomes.
    assert_eq!(call("GET", "/jobs/converge", "/jobs/{name}", Some(READER), None).0, 200);
    let check = json_body(r#"{"check": true}"#);
    let (status, drift) = call("POST", "/jobs/converge/run?wait=true", "/jobs/{name}/run", Some(ADMIN), check);
    assert_eq!((status, &drift["fire"]["status"]), (200, &serde_json::json!("drift")), "{drift}");
    assert_eq!(drift["results"][0]["resources"][0]["status"], "changed", "{drift}");
    assert_eq!(call("GET", "/fires?drift=true", "/fires", Some(READER), None).0, 200);
    assert_eq!(call("POST", "/jobs/daily/disable", "/jobs/{name}/disable", Some(ADMIN), None).0, 200);
    assert_eq!(call("POST", "/jobs/daily/enable", "/jobs/{name}/enable", Some(ADMIN), None).0, 200);
    assert_eq!(call("POST", "/reload", "/reload", Some(ADMIN), None).0, 200);
    let (_, slow) = call("POST", "/jobs/slow/run", "/jobs/{name}/run", Some(ADMIN), None);
    let slow = slow["fire"].as_i64().unwrap();
    assert!(wait_for(Duration::from_secs(20), || {
        send("GET", &format!("{api}/status"), Some(READER), None).text.contains(&format!("\"id\":{slow}"))
    }));
    assert_eq!(call("GET", &format!("/fires/{slow}"), "/fires/{id}", Some(READER), None).0, 200);
    assert_eq!(call("GET", "/status", "/status", Some(READER), None).0, 200);
    let (status, body) = call("POST", &format!("/fires/{slow}/cancel"), "/fires/{id}/cancel", Some(ADMIN), None);
    assert_eq!(status, 200, "{body}");

    // Errors: unknown names and ids, malformed paths, queries and bodies.
    let mut messages = Vec::new();
    let huge = format!(r#"{{"nodes": ["{}"]}}"#, "x".repeat(3 << 20));
    for (method, path, template, body, expected) in [
        ("GET", "/jobs/nope", "/jobs/{name}", None, 404),
        ("POST", "/jobs/nope/run", "/jobs/{name}/run", None, 404),
        ("POST", "/jobs/hello/run", "/jobs/{name}/run", json_body(r#"{"nodes": ["ghost"]}"#), 400),
        ("POST", "/jobs/hello/run", "/jobs/{name}/run", json_body("{"), 400),
        ("POST", "/jobs/hello/run", "/jobs/{name}/run", json_body(r#"{"nodes": 5}"#), 422),
        ("POST", "/jobs/hello/run", "/jobs/{name}/run", Some(("text/plain", "hi")), 415),
        ("POST", "/jobs/hello/run", "/jobs/{name}/run", json_body(&huge), 413),
        ("POST", "/jobs/hello/run?wait=maybe", "/jobs/{name}/run", None, 400),
        ("POST", "/jobs/nope/enable", "/jobs/{name}/enable", None, 404),
        ("POST", "/jobs/nope/disable", "/jobs/{name}/disable", None, 404),
        ("GET", "/fires?limit=many", "/fires", None, 400),
        ("GET", "/fires?failed=maybe", "/fires", None, 400),
        ("GET", "/notifications?limit=many", "/notifications", None, 400),
        ("GET", "/fires/424242", "/fires/{id}", None, 404),
        ("GET", "/fires/cells?ids=1,x", "/fires/cells", None, 400),
        ("GET", "/fires/cells", "/fires/cells", None, 400),
        ("GET", "/fires/99999999999999999999", "/fires/{id}", None, 400),
        ("GET", "/fires/abc", "/fires/{id}", None, 400),
        ("GET", &format!("/fires/{fire}?wait=perhaps"), "/fires/{id}", None, 400),
        ("POST", &format!("/fires/{fire}/cancel"), "/fires/{id}/cancel", None, 404),
        ("POST", "/fires/abc/cancel", "/fires/{id}/cancel", None, 400),
    ] {
        let token = if method == "GET" { READER } else { ADMIN };
        let (status, answer) = call(method, path, template, Some(token), body);
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert!(answer["error"].is_string(), "{method} {path}: {answer}");
        messages.push(answer["error"].as_str().unwrap().to_string());
    }
    for said in [
        "`abc` is not a valid id: expected a whole number",
        "bad query: limit: invalid digit found in string",
        "bad request body: nodes: invalid type: integer `5`, expected a sequence",
        "the request body is not JSON",
        "a request body must be JSON",
        "no job named `nope`",
    ] {
        assert!(messages.iter().any(|m| m.contains(said)), "no {said:?} in {messages:#?}");
    }

    // Tokens: none or an unknown one is 401 everywhere, a read token acting is 403.
    for (method, template) in &operations {
        let path = template.replace("{name}", "hello").replace("{id}", &fire.to_string());
        assert_eq!(call(method, &path, template, None, None).0, 401, "{method} {path}");
        assert_eq!(call(method, &path, template, Some("not-a-token-0123456789"), None).0, 401, "{method} {path}");
        if method != "GET" {
            assert_eq!(call(method, &path, template, Some(READER), None).0, 403, "{method} {path}");
        }
    }

    // The event stream: an event resumed from before the first one matches Event.
    let events = send_headers("GET", &format!("{api}/events?job=hello"), Some(READER), None, &[("Last-Event-ID", "0")]);
    assert_eq!(events.status, 200);
    assert!(events.text.contains("id:"), "{}", events.text);
    contract.check("GET", "/events", &events);

    // Unknown endpoints and methods answer JSON too.
    let unknown = send("GET", &format!("{api}/nope"), Some(READER), None);
    assert_eq!((unknown.status, unknown.content_type.as_str()), (404, "application/json"));
    let wrong = send("DELETE", &format!("{api}/jobs"), Some(ADMIN), None);
    assert_eq!((wrong.status, wrong.content_type.as_str()), (405, "application/json"), "{}", wrong.text);

    // Every operation of the document was exercised with a success.
    for (method, template) in &operations {
        let succeeded = contract.seen.iter().any(|(m, t, s)| m == method && t == template && *s < 300);
        assert!(succeeded, "{method} {template} was never answered with a success");
    }
    assert!(wait_for(Duration::from_secs(10), || {
        serde_json::from_str::<Value>(&send("GET", &format!("{api}/fires/{slow}"), Some(READER), None).text).unwrap()["fire"]
            ["status"]
            == "interrupted"
    }));
    daemon.stop();
}

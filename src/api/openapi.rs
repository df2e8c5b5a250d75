//! `/openapi.json`: the API described for tools (OpenAPI 3.0).

use axum::Json;
use serde_json::{Value, json};

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn answer(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn errors() -> Value {
    let error = answer("error", reference("Error"));
    json!({ "401": error, "403": error, "404": error, "400": error })
}

fn operation(summary: &str, ok: Value, parameters: Value) -> Value {
    let mut responses = errors();
    responses["200"] = ok;
    json!({ "summary": summary, "parameters": parameters, "responses": responses, "security": [{ "bearer": [] }] })
}

fn path_param(name: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": kind } })
}

fn query_param(name: &str, kind: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": { "type": kind } })
}

pub(crate) async fn document() -> Json<Value> {
    let string = json!({ "type": "string" });
    let time = json!({ "type": "string", "format": "date-time" });
    let fire_record = json!({
        "type": "object",
        "properties": {
            "id": { "type": "integer" }, "job": string, "scheduled": time,
            "trigger": { "type": "string", "enum": ["schedule", "catch-up", "reboot", "manual"] },
            "status": { "type": "string", "enum": ["running", "ok", "failed", "skipped", "interrupted", "timed-out"] },
            "started": time, "finished": time, "nodes": { "type": "array", "items": string },
            "ok": { "type": "integer" }, "failed": { "type": "integer" }, "note": string
        }
    });
    let node_record = json!({
        "type": "object",
        "properties": {
            "fire_id": { "type": "integer" }, "node": string, "attempt": { "type": "integer" },
            "status": { "type": "string", "enum": ["ok", "failed", "timed-out", "skipped", "interrupted"] },
            "exit_code": { "type": "integer" }, "started": time, "duration_ms": { "type": "integer" },
            "error": string, "output": string
        }
    });
    let job = json!({
        "type": "object",
        "properties": {
            "name": string, "task": string, "description": string, "schedule": string, "timezone": string,
            "next": time, "targets": { "type": "array", "items": string }, "enabled": { "type": "boolean" },
            "last": reference("FireRecord")
        }
    });
    let node = json!({
        "type": "object",
        "properties": { "name": string, "host": string, "port": { "type": "integer" }, "user": string, "auth": string, "local": { "type": "boolean" } }
    });
    let status = json!({
        "type": "object",
        "properties": {
            "version": string,
            "config": { "type": "string", "description": "the configuration file this daemon serves, absolute and canonical on its host; the CLI uses a daemon found at its configuration's listen address only when this is that configuration" },
            "started": time, "uptime_seconds": { "type": "number" },
            "jobs": { "type": "integer" }, "nodes": { "type": "integer" },
            "running": { "type": "array", "items": { "type": "object" } },
            "next": { "type": "array", "items": { "type": "object", "properties": { "job": string, "at": time } } },
            "config_errors": { "type": "array", "items": string },
            "ssh_masters": { "type": "integer" },
            "restart_pending": { "type": "array", "description": "settings changed since the daemon started that take effect only when it restarts (listen, tls, state, retention); empty when none",
                                 "items": { "type": "object", "properties": { "setting": string, "in_force": string, "configured": string } } }
        }
    });
    let name = path_param("name", "string");
    let id = path_param("id", "integer");
    Json(json!({
        "openapi": "3.0.3",
        "info": { "title": "Loom", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Scheduled tasks for fleets of servers. Send `Authorization: Bearer TOKEN` when tokens are configured; read tokens may only GET." },
        "servers": [{ "url": "/api/v1" }],
        "paths": {
            "/status": { "get": operation("Daemon status: uptime, running and next fires, errors of a failed reload, settings waiting for a restart", answer("status", reference("Status")), json!([])) },
            "/reload": { "post": operation("Reload the configuration now; token changes apply from here on, listen/tls/state/retention changes wait for a restart (see Status.restart_pending)", answer("outcome", reference("Reload")), json!([])) },
            "/nodes": { "get": operation("Configured nodes (never their secrets)", answer("nodes", json!({ "type": "array", "items": reference("Node") })), json!([])) },
            "/jobs": { "get": operation("Jobs with schedule, next fire, last result, enabled", answer("jobs", json!({ "type": "array", "items": reference("Job") })), json!([])) },
            "/jobs/{name}": { "get": operation("One job", answer("job", reference("Job")), json!([name])) },
            "/jobs/{name}/run": { "post": {
                "summary": "Run a job now; with ?wait=true answer with every node's result when it has finished",
                "parameters": [name, query_param("wait", "boolean")],
                "requestBody": { "required": false, "content": { "application/json": { "schema": { "type": "object", "properties": { "nodes": { "type": "array", "items": string } } } } } },
                "responses": { "200": answer("finished fire", reference("FireDetail")), "202": answer("started fire", json!({ "type": "object", "properties": { "fire": { "type": "integer" } } })),
                               "400": answer("error", reference("Error")), "401": answer("error", reference("Error")), "403": answer("error", reference("Error")), "404": answer("error", reference("Error")) },
                "security": [{ "bearer": [] }]
            } },
            "/jobs/{name}/enable": { "post": operation("Enable a job (kept across restarts and reloads)", answer("job", reference("Job")), json!([name])) },
            "/jobs/{name}/disable": { "post": operation("Disable a job (kept across restarts and reloads)", answer("job", reference("Job")), json!([name])) },
            "/fires": { "get": operation("Fires, newest first", answer("fires", json!({ "type": "array", "items": reference("FireRecord") })),
                json!([query_param("job", "string"), query_param("node", "string"), query_param("failed", "boolean"), query_param("limit", "integer")])) },
            "/fires/{id}": { "get": operation("One fire with its node results and output; with ?wait=true answer once it has finished", answer("fire", reference("FireDetail")), json!([id, query_param("wait", "boolean")])) },
            "/fires/{id}/cancel": { "post": operation("Cancel a running fire", answer("cancelled", json!({ "type": "object" })), json!([id])) },
            "/events": { "get": {
                "summary": "Live events as Server-Sent Events: fire-started, output, node-finished, fire-finished, lagged",
                "description": "Each event's `event:` is its type and its `data:` the JSON of an Event (with the same `type`); each carries its number as `id:`, increasing (also across daemon restarts). The daemon keeps its last 10,000 events (at most 32 MiB of output text). With `Last-Event-ID: N` the stream first sends every kept event after N (filtered by `job`), then live ones; a number the daemon never gave counts as older than all its events. Events the client should have had but that are no longer kept are replaced by one `lagged` event (no `id:`) whose data is a Lagged, and the stream goes on.",
                "parameters": [query_param("job", "string"),
                               { "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "integer" }, "description": "resume after this event number" }],
                "responses": { "200": { "description": "event stream", "content": { "text/event-stream": { "schema": { "oneOf": [reference("Event"), reference("Lagged")] } } } } },
                "security": [{ "bearer": [] }]
            } }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "properties": { "error": string } },
                "FireRecord": fire_record,
                "NodeRecord": node_record,
                "FireDetail": { "type": "object", "properties": { "fire": reference("FireRecord"), "results": { "type": "array", "items": reference("NodeRecord") } } },
                "Job": job,
                "Node": node,
                "Status": status,
                "Reload": { "type": "object", "properties": { "ok": { "type": "boolean" }, "summary": string, "errors": { "type": "array", "items": string } } },
                "Event": {
                    "type": "object",
                    "description": "fire-started: fire, job, scheduled, trigger, nodes; output: fire, job, node, text; node-finished: fire, job, node, attempt, status, error, seconds; fire-finished: fire, job, status, seconds",
                    "required": ["type", "job"],
                    "properties": {
                        "type": { "type": "string", "enum": ["fire-started", "output", "node-finished", "fire-finished"] },
                        "fire": { "type": "integer" }, "job": string, "node": string, "scheduled": time,
                        "trigger": { "type": "string" }, "nodes": { "type": "array", "items": string }, "text": string,
                        "attempt": { "type": "integer" }, "status": string, "error": string, "seconds": { "type": "number" }
                    }
                },
                "Lagged": {
                    "type": "object",
                    "description": "events after the client's position that the daemon no longer kept",
                    "required": ["type", "missed"],
                    "properties": { "type": { "type": "string", "enum": ["lagged"] }, "missed": { "type": "integer", "description": "how many events (of every job) were missed" } }
                }
            }
        }
    }))
}

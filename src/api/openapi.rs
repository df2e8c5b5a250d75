//! `/openapi.json`: the API described for tools, generated from the handlers'
//! `#[utoipa::path]` annotations and the types they answer with, so it cannot drift
//! from what is served.
//!
//! What the handlers do not say themselves is added here in one place: the
//! answers of the token check (401, and 403 for a read token on a write) and of a
//! daemon that is stopping or whose store failed (503, 500), on every endpoint the
//! token check guards. The document itself is served without a token.

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Loom",
        description = "Scheduled tasks for fleets of servers. Send `Authorization: Bearer TOKEN` when tokens are configured; read tokens may only GET. Every error answer is JSON: `{\"error\": \"...\"}`."
    ),
    servers((url = "/api/v1"))
)]
pub(crate) struct ApiDoc;

/// Adds what the token check and the daemon answer on every guarded operation.
pub(crate) fn finish(mut document: OpenApi) -> OpenApi {
    // utoipa takes the license from Cargo.toml, which names none: say nothing.
    document.info.license.take_if(|license| license.name.is_empty());
    let components = document.components.get_or_insert_with(Default::default);
    components
        .add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    for item in document.paths.paths.values_mut() {
        let reads = [&mut item.get, &mut item.head].into_iter().flatten();
        for operation in reads {
            guard(operation, false);
        }
        let writes = [&mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten();
        for operation in writes {
            guard(operation, true);
        }
    }
    document
}

fn guard(operation: &mut Operation, writes: bool) {
    operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    let mut add = |status: &str, description: &str| {
        let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build();
        let response = ResponseBuilder::new().description(description).content("application/json", content).build();
        operation.responses.responses.entry(status.to_string()).or_insert(response.into());
    };
    add("401", "tokens are configured and the request has none, or an unknown one");
    if writes {
        add("403", "a read token may only GET");
    }
    add("500", "the state store failed");
    add("503", "the daemon is stopping");
}

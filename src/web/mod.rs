//! The web interface: a page and its scripts, embedded in the binary and served at
//! `/` beside the API, so an installed `loom` needs no extra files and the browser
//! talks to nothing but the daemon.
//!
//! It is a client of the REST API like the CLI: the page asks `/api/v1` with the
//! token kept in the browser's session storage, and the API's token check decides
//! what it may read or do. The assets themselves hold no data and no secret, so they
//! are served without a token. There is no build step: plain ES modules and one
//! vendored library (`assets/vendor`, Preact with htm).
//! This module does not render data on the server and does not know the API's types.

mod assets;

pub(crate) use assets::router;

//! Tasks: Rhai functions applied to one node at a time.

pub mod catalog;
pub(crate) mod engine;
pub(crate) mod facts;
pub mod handle;
pub mod scripts;
pub(crate) mod stdlib;

pub use catalog::{Called, Catalog, TaskError};
#[doc(hidden)]
pub use handle::{Output, Ssh};

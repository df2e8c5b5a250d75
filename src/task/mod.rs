//! Tasks: Rhai functions applied to one node at a time.

pub mod catalog;
mod engine;
pub mod handle;
mod stdlib;

pub use catalog::{Catalog, TaskError};
pub use handle::{Output, Ssh};

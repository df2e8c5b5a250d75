//! Tasks: Rhai functions applied to one node at a time.

pub mod catalog;
mod engine;
pub mod handle;
pub mod scripts;
mod stdlib;

pub use catalog::{Catalog, TaskError};
#[doc(hidden)]
pub use engine::{bench_engine, bench_eval};
pub use handle::{Output, Ssh};

//! Resources: desired state on nodes, checked and applied by Rhai type modules.
//!
//! A job's `resources:` (parsed by `config::resource`) are prepared here once per
//! configuration — each type's module found and compiled, its field schema read
//! (`fn fields()`) and the declaration checked against it — and run per node by
//! `run`: facts once, then for each resource `when`, `check`, and (unless in check
//! mode) `apply`; handlers at the end. What the resource types do on a node is
//! theirs (`stdlib/loom/resource/*.rhai`); this module never touches a node itself.

pub(crate) mod plan;
pub(crate) mod run;
pub(crate) mod schema;
pub mod summary;

pub(crate) use plan::{Plan, prepare};
pub use summary::Summary;

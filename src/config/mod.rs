//! Configuration: the main file, node and job manifests, the datafile.

pub mod diagnostics;
mod fields;
#[cfg(test)]
mod fuzz;
pub mod job;
pub mod load;
pub mod node;
pub(crate) mod read;
pub mod resource;
pub mod settings;
pub mod tls;
mod yaml;

pub use diagnostics::{Diagnostic, Location, Severity};
pub(crate) use fields::nearest as nearest_key;
pub use job::{Job, Mode, TaskPath};
pub use load::{Config, FindError, find, load};
pub use node::Node;
pub(crate) use read::read_text;
pub use resource::{At, Content, Resource};
pub use settings::{ApiToken, Role, Settings};
pub(crate) use yaml::SourceFile;

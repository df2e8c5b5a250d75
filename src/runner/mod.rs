//! Turning a fire into one task call per target node.

pub mod fire;
pub mod node_result;

pub use fire::{Fire, FireReport, Runner, Trigger};
pub use node_result::{NodeResult, Status};

//! Turning a fire into one task call per target node, and recording what happened.

pub mod events;
pub mod fire;
pub mod gate;
pub mod node_result;
pub mod record;

pub use events::EventLog;
pub use fire::{Fire, FireReport, Runner};
pub use gate::Gate;
pub use node_result::NodeResult;
pub use record::Recorder;

//! When jobs fire: cron expressions in time zones, and the timeline of next fires.

pub mod catchup;
pub mod cron;
pub mod timeline;

pub use timeline::Timeline;

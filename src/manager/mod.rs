//! Alert manager groundwork: label sets, matchers, the routing tree,
//! inhibition rules and time intervals.

pub mod inhibit;
pub mod labels;
pub mod matcher;
pub mod route;
pub mod time_interval;

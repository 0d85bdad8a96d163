//! The alert manager: one alert model for rule alerts, posted alerts and passive checks; label
//! sets and matchers; the routing tree; inhibition; time intervals; silences; the notification
//! log; and the dispatcher that groups alerts and decides when a notification goes out.

pub mod alert;
pub mod dispatch;
pub mod inhibit;
pub mod labels;
pub mod matcher;
pub mod nflog;
pub mod route;
pub mod silence;
pub mod time_interval;

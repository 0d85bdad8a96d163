//! Ingest: what agents push, parsed into points. Line protocol parsing and recordings for now;
//! the HTTP endpoints build on these.

pub mod line_protocol;
pub mod points;
pub mod prom_remote;
pub mod recording;
pub mod write;

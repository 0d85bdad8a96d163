//! alertd: an alerting engine.
//!
//! Data flows through the modules in this order: [`ingest`] parses what agents push, [`rules`]
//! turns rule scripts into pipelines, [`engine`] runs them over points and produces alert events.

pub mod rules;

//! alertd: an alerting engine.
//!
//! Data flows through the modules in this order: [`ingest`] parses what agents push, [`rules`]
//! turns rule scripts into checked pipeline plans, [`engine`] runs them over points and produces
//! alert events; [`manager`] holds the alert manager's routing, matching, inhibition and time
//! intervals (Alertmanager semantics); [`storage`] keeps alert state in SQLite; [`service`] is `alertd run` (HTTP edge,
//! engine thread, metrics); [`cli`] holds the offline tools (`alertd check`, `alertd test`).

pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod hosts;
pub mod ingest;
pub mod manager;
pub mod receivers;
pub mod rules;
pub mod service;
pub mod storage;
pub mod ui;

//! Anomaly-map files: the reading and writing code lives in [`ust_data::maps`]; this module
//! re-exports it under the name the command modules have always used.

pub use ust_data::maps::*;

//! What every trainer here stands on, whatever it trains (teacher, students, one-class
//! students): the optimiser, the divergence test, seeded initial weights and seed streams, the
//! parts of a checkpoint, and the observer that watches a run. Nothing in this module knows
//! about teachers or students, so that none of it imports from above.

pub mod adam;
pub mod checkpoint;
pub mod guard;
pub mod init;
pub mod observer;

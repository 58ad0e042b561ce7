//! One module per subcommand. Each exposes its clap `Args` type and
//! `run(args) -> anyhow::Result<std::process::ExitCode>`. One exception until it joins
//! `teacher` (issue 19): `quality` is `ust teacher quality`'s.

pub mod baseline;
pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod evaluate;
pub mod experiment;
pub mod oneclass;
pub mod predict;
pub mod quality;
pub mod teacher;
pub mod train;

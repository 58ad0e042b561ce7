//! One module per subcommand. Each exposes its clap `Args` type and
//! `run(args) -> anyhow::Result<std::process::ExitCode>`.

pub mod baseline;
pub mod bench;
pub mod data;
pub mod demo;
pub mod eval;
pub mod evaluate;
pub mod experiment;
pub mod oneclass;
pub mod predict;
pub mod teacher;
pub mod train;

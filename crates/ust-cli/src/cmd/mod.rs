//! One module per subcommand. Each exposes its clap `Args` type and
//! `run(args) -> anyhow::Result<std::process::ExitCode>`.

pub mod data;
pub mod eval;
pub mod teacher;

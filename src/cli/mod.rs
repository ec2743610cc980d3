//! The command-line interface: one file per subcommand, each with its `Args` and `run`.

pub mod detect;
pub mod eval;
pub mod grad;
pub mod info;
pub mod link;
pub mod preprocess;
pub mod synth;
pub mod trace;
pub mod train;

//! One module per subcommand.

pub mod eval;
pub mod predict;
pub mod train;
pub mod train_postprocessor;
pub mod validate;

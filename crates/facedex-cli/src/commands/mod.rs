//! One module per subcommand.

pub mod detect;

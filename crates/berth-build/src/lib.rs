//! Dockerfile builds: the parser (pure, no I/O), the words and variables
//! of instructions, the stage graph and the build cache. The engine runs
//! the steps.

#[cfg(feature = "engine")]
pub mod builder;
#[cfg(feature = "engine")]
pub mod cache;
pub mod ignore;
pub mod instructions;
pub mod parse;
pub mod shell;

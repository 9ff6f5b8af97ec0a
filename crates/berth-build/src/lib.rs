//! Dockerfile builds: the parser (pure, no I/O), the words and variables
//! of instructions, the stages, `.dockerignore`, and the build cache as
//! it lies on disk. The engine runs the steps (`berth-engine`'s `build`).

pub mod cache;
pub mod ignore;
pub mod instructions;
pub mod parse;
pub mod shell;

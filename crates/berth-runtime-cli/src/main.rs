//! berth-runtime: runc's command line over the berth runtime library.

#[allow(clippy::exit)] // the binary owns the exit code
fn main() {
    let code = berth_runtime_cli::main_with_args(std::env::args_os());
    std::process::exit(code)
}

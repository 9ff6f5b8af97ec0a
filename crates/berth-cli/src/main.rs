//! `berth`: the docker-compatible command line.

fn main() {
    let code = berth_cli::main(std::env::args().collect());
    std::process::exit(code);
}

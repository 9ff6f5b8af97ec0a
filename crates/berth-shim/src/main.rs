//! berth-shim CONFIG: run one container as described by a shim config file.

fn main() {
    let Some(config) = std::env::args_os().nth(1) else {
        eprintln!("usage: berth-shim CONFIG");
        std::process::exit(2);
    };
    let code = berth_shim::main_with_config(std::path::Path::new(&config));
    std::process::exit(code);
}

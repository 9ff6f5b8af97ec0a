//! berth-shim CONFIG: run one container as described by a shim config file.
//! berth-shim --standby PLACEHOLDER: wait for a config's path on stdin,
//! then do the same (see `berth_shim::standby`).

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let code = match args.as_slice() {
        [flag, _] if flag == "--standby" => berth_shim::standby(),
        [config] => berth_shim::main_with_config(std::path::Path::new(config)),
        _ => {
            eprintln!("usage: berth-shim CONFIG | berth-shim --standby PLACEHOLDER");
            2
        }
    };
    std::process::exit(code);
}

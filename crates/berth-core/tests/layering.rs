//! Dependencies point down (STYLE.md rule 2): every crate's `Cargo.toml`
//! may name only berth crates of a lower layer, and the async side (daemon,
//! API, engine) never links the runtime, so no clone or unshare can happen
//! in the daemon.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

/// Layer of each crate of DESIGN.md; higher may depend on lower.
const LAYERS: &[(&str, u32)] = &[
    ("berth-core", 0),
    ("berth-api-types", 0),
    ("berth-probe", 0),
    ("berth-cgroups", 1),
    ("berth-shim-proto", 1),
    ("berth-image", 1),
    ("berth-network", 1),
    ("berth-client", 1),
    ("berth-build", 1),
    ("berth-runtime", 2),
    ("berth-registry", 2),
    ("berth-cli", 2),
    ("berth-runtime-cli", 3),
    ("berth-shim", 3),
    ("berth-engine", 3),
    ("berth-api", 4),
    ("berth-cri", 4),
    ("berthd", 5),
];

/// Edges that are forbidden whatever the layers say.
const FORBIDDEN: &[(&str, &str)] = &[
    ("berthd", "berth-runtime"),
    ("berth-api", "berth-runtime"),
    ("berth-cri", "berth-runtime"),
    ("berth-engine", "berth-runtime"),
];

fn layer(name: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("crate {name} has no layer in this test"))
}

/// Names of berth crates in the `[dependencies]` table.
fn berth_deps(toml: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in toml.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_deps = l == "[dependencies]";
            continue;
        }
        if in_deps {
            let name = l.split(['=', '.', ' ']).next().unwrap_or("");
            if name.starts_with("berth") {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[test]
fn dependencies_point_down() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for entry in std::fs::read_dir(&crates).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(toml) = std::fs::read_to_string(&manifest) else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        for dep in berth_deps(&toml) {
            assert!(
                layer(&dep) < layer(&name),
                "{name} (layer {}) must not depend on {dep} (layer {})",
                layer(&name),
                layer(&dep)
            );
            assert!(!FORBIDDEN.contains(&(name.as_str(), dep.as_str())), "{name} must not link {dep}");
        }
        checked += 1;
    }
    assert!(checked >= 4, "found the crates");
}

#[test]
fn parser_sees_dependencies() {
    let toml = "[package]\nname = \"x\"\n[dependencies]\nberth-core.workspace = true\nlibc = \"0.2\"\n[dev-dependencies]\nberth-runtime = {}\n";
    assert_eq!(berth_deps(toml), ["berth-core"]);
}

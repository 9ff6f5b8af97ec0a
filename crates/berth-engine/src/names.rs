//! Container names: checked as Docker checks them, and generated as
//! `adjective_surname` when none is given.

use crate::{Error, Result};

const ADJECTIVES: &[&str] = &[
    "agile", "amiable", "ardent", "bold", "brave", "bright", "busy", "calm", "candid", "careful", "cheerful", "clever",
    "cool", "curious", "daring", "deft", "eager", "earnest", "elated", "epic", "fervent", "fond", "frank", "gallant",
    "gentle", "glad", "graceful", "happy", "hardy", "honest", "humble", "jolly", "keen", "kind", "lively", "loyal",
    "lucid", "merry", "mellow", "modest", "nimble", "noble", "patient", "placid", "polite", "proud", "quick", "quiet",
    "rapid", "serene", "sharp", "sincere", "steady", "stoic", "sunny", "swift", "tender", "tidy", "trusty", "upbeat",
    "vivid", "warm", "wise", "witty", "zealous",
];

const SURNAMES: &[&str] = &[
    "agnesi",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bohr",
    "boole",
    "cantor",
    "cauchy",
    "curie",
    "darwin",
    "dijkstra",
    "dirac",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "galois",
    "gauss",
    "germain",
    "goedel",
    "hamilton",
    "hawking",
    "heisenberg",
    "hilbert",
    "hopper",
    "hypatia",
    "jacobi",
    "kepler",
    "knuth",
    "kolmogorov",
    "lagrange",
    "laplace",
    "leibniz",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "pauli",
    "planck",
    "poincare",
    "ramanujan",
    "riemann",
    "ritchie",
    "shannon",
    "sinoussi",
    "somerville",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volta",
    "wiles",
    "wozniak",
    "yalow",
];

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return t.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(b)
}

/// Characters of an id [`new_id`] makes.
pub const ID_LEN: usize = 64;

/// A fresh 64-hex container or exec id.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_err() {
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&random_u64().to_le_bytes());
        }
    }
    berth_core::id::hex(&b)
}

/// A name like `clever_turing`; `attempt` > 0 adds a number, as Docker
/// does after a collision.
pub fn generate(attempt: u32) -> String {
    let r = random_u64();
    let a = ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize];
    let s = SURNAMES[((r >> 32) % SURNAMES.len() as u64) as usize];
    if attempt == 0 {
        format!("{a}_{s}")
    } else {
        format!("{a}_{s}{}", r % 10)
    }
}

/// Docker's rule for names: `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+`. Returns the
/// name with its leading slash.
pub fn validate(name: &str) -> Result<String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let ok = bare.len() >= 2
        && bare.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && bare.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::Invalid(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(format!("/{bare}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        assert_eq!(validate("web").unwrap(), "/web");
        assert_eq!(validate("/web-1.a_b").unwrap(), "/web-1.a_b");
        assert!(validate("a").is_err());
        assert!(validate("-web").is_err());
        assert!(validate("we b").is_err());
        let g = generate(0);
        assert!(validate(&g).is_ok() && g.contains('_'), "{g}");
        assert_eq!(new_id().len(), 64);
    }
}

//! Terminal key sequences.

/// Detach keys as Docker writes them (`ctrl-p,ctrl-q`, `ctrl-a,x`): single
/// characters and `ctrl-<a-z@[\]^_>`, any case, comma-separated (moby's
/// `term.ToBytes`); `None` when a key is neither.
pub fn detach_keys(spec: &str) -> Option<Vec<u8>> {
    spec.split(',')
        .map(|key| {
            if let [b] = key.as_bytes() {
                return Some(*b);
            }
            match key.to_ascii_lowercase().strip_prefix("ctrl-").map(str::as_bytes) {
                Some([c @ b'a'..=b'z']) => Some(c - b'a' + 1),
                Some([c @ (b'@' | b'[' | b'\\' | b']' | b'^' | b'_')]) => Some(c - b'@'),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_s() {
        assert_eq!(detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(detach_keys("ctrl-a,x,ctrl-@,CTRL-],ctrl-\\").unwrap(), [1, b'x', 0, 29, 28]);
        for bad in ["", "ctrl-", "ctrl-1", "ab", "ctrl-p,", "shift-a"] {
            assert!(detach_keys(bad).is_none(), "{bad}");
        }
    }
}

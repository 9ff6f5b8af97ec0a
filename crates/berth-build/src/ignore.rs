//! `.dockerignore`: which files of the context a build does not see.
//!
//! Docker's rules: one pattern a line, `#` comments and blank lines
//! skipped, each pattern cleaned as a path (a leading `/` and `./` gone),
//! `**` any number of directories, the rest Go's `filepath.Match`; a
//! pattern that matches a directory matches all below it; `!` makes an
//! exception, and the last pattern that matches a path decides.

use std::path::Path;

use crate::shell::glob;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns {
    /// Each pattern's components, and whether it is an exception.
    rules: Vec<(Vec<String>, bool)>,
}

/// A path cleaned as Go's `filepath.Clean` does, relative, without `.`.
fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_owned()),
        }
    }
    out
}

impl Patterns {
    pub fn parse(text: &str) -> Patterns {
        let mut rules = vec![];
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exception, p) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let parts = clean(p);
            if parts.is_empty() {
                continue;
            }
            rules.push((parts, exception));
        }
        Patterns { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `rel` (a path of the context, `/`-separated) is left out.
    pub fn excludes(&self, rel: &str) -> bool {
        let path = clean(rel);
        let mut out = false;
        for (pattern, exception) in &self.rules {
            // The path, or a directory above it.
            let hit = (1..=path.len()).any(|n| matches(pattern, &path[..n]));
            if hit {
                out = !exception;
            }
        }
        out
    }
}

/// Whether `path` matches `pattern` whole, component by component.
fn matches(pattern: &[String], path: &[String]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|i| matches(&pattern[1..], &path[i..])),
        Some(p) => {
            let Some(first) = path.first() else { return false };
            glob(&p.chars().collect::<Vec<_>>(), &first.chars().collect::<Vec<_>>())
                && matches(&pattern[1..], &path[1..])
        }
    }
}

/// Remove from the context directory `root` what `patterns` leave out
/// (symlinks are not followed: a link is removed, never what it leads to).
pub fn apply(root: &Path, patterns: &Patterns) -> std::io::Result<()> {
    if patterns.is_empty() {
        return Ok(());
    }
    walk(root, "", patterns)
}

fn walk(dir: &Path, rel: &str, patterns: &Patterns) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let is_dir = e.file_type()?.is_dir();
        if is_dir {
            walk(&e.path(), &r, patterns)?;
            // Gone when left out and nothing an exception kept is in it.
            if patterns.excludes(&r) && std::fs::read_dir(e.path())?.next().is_none() {
                std::fs::remove_dir(e.path())?;
            }
        } else if patterns.excludes(&r) {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_docker_s_rules() {
        let p = Patterns::parse(
            "# comment\n\n/secret\n*.log\n!keep.log\nbuild/**/tmp\n**/*.bak\ndocs\n!docs/README.md\n./node_modules\n",
        );
        for (path, out) in [
            ("secret", true),
            ("secret/inner", true),
            ("a.log", true),
            ("keep.log", false),
            ("sub/a.log", false),
            ("build/x/y/tmp", true),
            ("build/tmp", true),
            ("build/x/tmp/f", true),
            ("deep/er/file.bak", true),
            ("file.bak", true),
            ("docs/guide.md", true),
            ("docs/README.md", false),
            ("node_modules/x", true),
            ("src/main.rs", false),
        ] {
            assert_eq!(p.excludes(path), out, "{path}");
        }
    }

    #[test]
    fn apply_removes_what_is_left_out_and_keeps_exceptions() {
        let root = std::env::temp_dir().join(format!("berth-ignore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for f in ["a.log", "keep.log", "docs/README.md", "docs/x.md", "src/main.rs"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
        let p = Patterns::parse("*.log\n!keep.log\ndocs\n!docs/README.md\netc-link\n");
        let done = apply(&root, &p);
        let left: Vec<bool> = ["a.log", "keep.log", "docs/README.md", "docs/x.md", "src/main.rs", "etc-link"]
            .iter()
            .map(|f| root.join(f).symlink_metadata().is_ok())
            .collect();
        let etc_kept = Path::new("/etc/hostname").exists() || Path::new("/etc/passwd").exists();
        std::fs::remove_dir_all(&root).unwrap();
        done.unwrap();
        assert_eq!(left, [false, true, true, false, true, false]);
        assert!(etc_kept, "the link went, not what it led to");
    }
}

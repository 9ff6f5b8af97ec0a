//! Words of a Dockerfile instruction as the Dockerfile reference reads
//! them ("Environment replacement"): quotes removed, the escape character
//! honoured, and variables expanded: `$v`, `${v}`, `${v:-w}`, `${v-w}`,
//! `${v:+w}`, `${v+w}`, `${v:?msg}`, `${v?msg}`, `${v#p}`, `${v##p}`,
//! `${v%p}`, `${v%%p}`, `${v/p/r}` and `${v//p/r}`, where `p` is a
//! shell pattern (`*`, `?`, `[…]`).
//!
//! Nothing here runs a shell: RUN, CMD and ENTRYPOINT are not expanded by
//! the builder, their shell does that.

use std::collections::HashMap;

/// Why a word could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(pub String);

type Result<T> = std::result::Result<T, ShellError>;

/// The variables a word is expanded with.
pub trait Vars {
    fn var(&self, name: &str) -> Option<&str>;
}

impl Vars for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// `NAME=value` pairs, the last of a name winning.
impl Vars for [(String, String)] {
    fn var(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn var(&self, name: &str) -> Option<&str> {
        self.as_slice().var(name)
    }
}

/// Reads words with an escape character (`\` or, by directive, `` ` ``).
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    pub escape: char,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer { escape: '\\' }
    }
}

/// Words being gathered: the current one, and whether it has begun (an
/// empty quoted string is a word).
#[derive(Default)]
struct Words {
    done: Vec<String>,
    cur: String,
    begun: bool,
}

impl Words {
    fn push(&mut self, c: char) {
        self.cur.push(c);
        self.begun = true;
    }

    fn push_str(&mut self, s: &str) {
        self.cur.push_str(s);
        self.begun = true;
    }

    /// An unquoted expansion: split on whitespace, as a shell splits it.
    fn push_split(&mut self, s: &str) {
        for (i, part) in s.split([' ', '\t', '\n']).enumerate() {
            if i > 0 {
                self.end();
            }
            if !part.is_empty() {
                self.push_str(part);
            }
        }
    }

    fn end(&mut self) {
        if self.begun {
            self.done.push(std::mem::take(&mut self.cur));
        }
        self.begun = false;
    }
}

struct Reader<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    /// A heredoc's body: quotes are text, and the escape character
    /// escapes only `$` and itself.
    heredoc: bool,
}

impl Lexer {
    /// One word: quotes removed and variables expanded, whitespace kept
    /// (WORKDIR, USER, a COPY source after splitting, an ENV value).
    pub fn word(&self, s: &str, vars: &dyn Vars) -> Result<String> {
        let mut r = Reader { chars: s.chars().collect(), pos: 0, escape: self.escape, vars, heredoc: false };
        let mut w = Words::default();
        r.run(&mut w, false, None)?;
        Ok(w.cur)
    }

    /// Words split on whitespace outside quotes, each expanded (an
    /// unquoted expansion splits too).
    pub fn words(&self, s: &str, vars: &dyn Vars) -> Result<Vec<String>> {
        let mut r = Reader { chars: s.chars().collect(), pos: 0, escape: self.escape, vars, heredoc: false };
        let mut w = Words::default();
        r.run(&mut w, true, None)?;
        w.end();
        Ok(w.done)
    }

    /// A heredoc's body with its variables expanded, as a shell expands an
    /// unquoted heredoc: quotes are kept as text.
    pub fn heredoc(&self, s: &str, vars: &dyn Vars) -> Result<String> {
        let mut r = Reader { chars: s.chars().collect(), pos: 0, escape: self.escape, vars, heredoc: true };
        let mut w = Words::default();
        r.run(&mut w, false, None)?;
        Ok(w.cur)
    }

    /// Words split on whitespace outside quotes, with quotes and escapes
    /// kept as written and nothing expanded: how `KEY=value` pairs and
    /// flags are told apart before their values are read.
    pub fn split_raw(&self, s: &str) -> Result<Vec<String>> {
        let chars: Vec<char> = s.chars().collect();
        let mut out = vec![];
        let mut cur = String::new();
        let mut i = 0;
        let mut quote: Option<char> = None;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(q) => {
                    cur.push(c);
                    if c == self.escape && q == '"' && i + 1 < chars.len() {
                        cur.push(chars[i + 1]);
                        i += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None if c == self.escape => {
                    cur.push(c);
                    if i + 1 < chars.len() {
                        cur.push(chars[i + 1]);
                        i += 1;
                    }
                }
                None if c == '\'' || c == '"' => {
                    quote = Some(c);
                    cur.push(c);
                }
                None if c.is_whitespace() => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                None => cur.push(c),
            }
            i += 1;
        }
        if let Some(q) = quote {
            let which = if q == '\'' { "single" } else { "double" };
            return Err(ShellError(format!("unexpected end of statement while looking for matching {which}-quote")));
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        Ok(out)
    }
}

fn name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Read into `w` until the end, or until `stop` (unquoted, unescaped;
    /// consumed). `split`: whitespace ends words.
    fn run(&mut self, w: &mut Words, split: bool, stop: Option<char>) -> Result<()> {
        while let Some(c) = self.next() {
            if Some(c) == stop {
                return Ok(());
            }
            match c {
                _ if self.heredoc && c == self.escape => match self.peek() {
                    Some(n) if n == '$' || n == self.escape => {
                        self.pos += 1;
                        w.push(n);
                    }
                    _ => w.push(c),
                },
                '\'' | '"' if self.heredoc => w.push(c),
                _ if c == self.escape => match self.next() {
                    Some(n) => w.push(n),
                    None => w.push(c),
                },
                '\'' => {
                    w.begun = true;
                    loop {
                        match self.next() {
                            Some('\'') => break,
                            Some(x) => w.push(x),
                            None => {
                                return Err(ShellError(
                                    "unexpected end of statement while looking for matching single-quote".into(),
                                ))
                            }
                        }
                    }
                }
                '"' => {
                    w.begun = true;
                    loop {
                        match self.next() {
                            Some('"') => break,
                            Some('$') => {
                                let v = self.dollar()?;
                                w.push_str(&v);
                            }
                            Some(x) if x == self.escape => match self.peek() {
                                Some(n) if n == '"' || n == '$' || n == self.escape => {
                                    self.pos += 1;
                                    w.push(n);
                                }
                                _ => w.push(x),
                            },
                            Some(x) => w.push(x),
                            None => {
                                return Err(ShellError(
                                    "unexpected end of statement while looking for matching double-quote".into(),
                                ))
                            }
                        }
                    }
                }
                '$' => {
                    let v = self.dollar()?;
                    if split {
                        w.push_split(&v);
                    } else {
                        w.push_str(&v);
                    }
                }
                c if split && c.is_whitespace() => w.end(),
                c => w.push(c),
            }
        }
        match stop {
            Some(s) => Err(ShellError(format!("missing '{s}'"))),
            None => Ok(()),
        }
    }

    /// A word inside `${…}` up to `stop` (or `}`), expanded, quotes removed.
    fn inner(&mut self, stop: char) -> Result<String> {
        let mut w = Words::default();
        self.run(&mut w, false, Some(stop))?;
        Ok(w.cur)
    }

    /// What follows a `$`.
    fn dollar(&mut self) -> Result<String> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if name_start(c) => {
                let mut name = String::new();
                while let Some(c) = self.peek().filter(|c| name_char(*c)) {
                    name.push(c);
                    self.pos += 1;
                }
                Ok(self.vars.var(&name).unwrap_or("").to_owned())
            }
            _ => Ok("$".into()),
        }
    }

    fn braced(&mut self) -> Result<String> {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| name_char(*c)) {
            name.push(c);
            self.pos += 1;
        }
        if name.is_empty() || !name.starts_with(name_start) {
            return Err(ShellError(format!("bad substitution: invalid variable name {name:?}")));
        }
        let value = self.vars.var(&name).map(str::to_owned);
        let Some(op) = self.next() else { return Err(ShellError("missing '}'".into())) };
        let set = value.is_some();
        let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
        let v = value.clone().unwrap_or_default();
        match op {
            '}' => Ok(v),
            ':' => {
                let m = self.next().ok_or_else(|| ShellError("missing '}'".into()))?;
                let word = self.inner('}')?;
                match m {
                    '-' => Ok(if nonempty { v } else { word }),
                    '+' => Ok(if nonempty { word } else { String::new() }),
                    '?' if nonempty => Ok(v),
                    '?' => Err(ShellError(format!(
                        "{name}: {}",
                        if word.is_empty() { "is not allowed to be unset" } else { &word }
                    ))),
                    other => Err(ShellError(format!("unsupported modifier ({other}) in substitution"))),
                }
            }
            '-' => {
                let word = self.inner('}')?;
                Ok(if set { v } else { word })
            }
            '+' => {
                let word = self.inner('}')?;
                Ok(if set { word } else { String::new() })
            }
            '?' => {
                let word = self.inner('}')?;
                if set {
                    Ok(v)
                } else {
                    Err(ShellError(format!(
                        "{name}: {}",
                        if word.is_empty() { "is not allowed to be unset" } else { &word }
                    )))
                }
            }
            '#' | '%' => {
                let longest = self.peek() == Some(op);
                if longest {
                    self.pos += 1;
                }
                let pattern: Vec<char> = self.inner('}')?.chars().collect();
                Ok(trim(&v, &pattern, op == '#', longest))
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                let pattern: Vec<char> =
                    self.inner('/').map_err(|_| ShellError("missing '/' in substitution".into()))?.chars().collect();
                let with = self.inner('}')?;
                Ok(replace(&v, &pattern, &with, all))
            }
            other => Err(ShellError(format!("unsupported modifier ({other}) in substitution"))),
        }
    }
}

/// `${v#p}` and the rest: `v` without the shortest (or longest) prefix
/// (`front`) or suffix that `pattern` matches.
fn trim(v: &str, pattern: &[char], front: bool, longest: bool) -> String {
    let chars: Vec<char> = v.chars().collect();
    let n = chars.len();
    let lens: Vec<usize> = if longest { (0..=n).rev().collect() } else { (0..=n).collect() };
    for len in lens {
        let part = if front { &chars[..len] } else { &chars[n - len..] };
        if glob(pattern, part) {
            let rest = if front { &chars[len..] } else { &chars[..n - len] };
            return rest.iter().collect();
        }
    }
    v.to_owned()
}

/// `${v/p/r}` (first match) or `${v//p/r}` (every match): each the
/// longest match at the earliest place.
fn replace(v: &str, pattern: &[char], with: &str, all: bool) -> String {
    if pattern.is_empty() {
        return v.to_owned();
    }
    let chars: Vec<char> = v.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut replaced = false;
    while i < chars.len() {
        if !replaced || all {
            if let Some(end) = (i + 1..=chars.len()).rev().find(|&e| glob(pattern, &chars[i..e])) {
                out.push_str(with);
                i = end;
                replaced = true;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Whether `s` matches the shell pattern `p` whole.
pub fn glob(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some('?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some('[') => {
            let Some(c) = s.first() else { return false };
            match class(&p[1..], *c) {
                Some((matched, used)) => matched && glob(&p[1 + used..], &s[1..]),
                // No closing bracket: a plain `[`.
                None => *c == '[' && glob(&p[1..], &s[1..]),
            }
        }
        Some(x) => s.first() == Some(x) && glob(&p[1..], &s[1..]),
    }
}

/// A bracket expression after its `[`: whether `c` is in it, and how many
/// characters it took with its `]`.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((found != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                found = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [("A", "apple"), ("E", ""), ("P", "/usr/local/bin/tool.tar.gz"), ("S", "x y  z")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn w(s: &str) -> String {
        Lexer::default().word(s, &vars()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn variables_expand_as_the_reference_says() {
        assert_eq!(w("$A ${A} ${A}s $Apple $"), "apple apple apples  $");
        assert_eq!(w("${A:-d} ${E:-d} ${U:-d} ${E-d} ${U-d}"), "apple d d  d");
        assert_eq!(w("${A:+yes} ${E:+yes} ${E+yes} ${U+yes}|"), "yes  yes |");
        assert_eq!(
            w("${P#*/} ${P##*/} ${P%.*} ${P%%.*}"),
            "usr/local/bin/tool.tar.gz tool.tar.gz /usr/local/bin/tool.tar /usr/local/bin/tool"
        );
        assert_eq!(w("${A/p/P} ${A//p/P} ${A/[ae]/_} ${A//?/.}"), "aPple aPPle _pple .....");
        assert_eq!(w("${U:?must be set}"), "error: U: must be set");
        assert_eq!(w("${A:?x}"), "apple");
        assert_eq!(w("${A:=x}"), "error: unsupported modifier (=) in substitution");
        assert_eq!(w("${A"), "error: missing '}'");
        assert_eq!(w("${U:-${A}-ish}"), "apple-ish");
    }

    #[test]
    fn quotes_and_escapes_are_read_as_a_shell_reads_them() {
        assert_eq!(w(r#"'$A' "$A" \$A "a\"b" 'it''s'"#), r#"$A apple $A a"b its"#);
        assert_eq!(w(r#""\d" \d"#), r#"\d d"#);
        assert_eq!(w("'open"), "error: unexpected end of statement while looking for matching single-quote");
        let words = Lexer::default().words(r#"a "b c" $S '' d\ e"#, &vars()).unwrap();
        assert_eq!(words, ["a", "b c", "x", "y", "z", "", "d e"]);
        let tick = Lexer { escape: '`' };
        assert_eq!(tick.word(r"C:\dir `$A", &vars()).unwrap(), r"C:\dir $A");
        assert_eq!(
            Lexer::default().split_raw(r#"--from=x a="b c" d\ e"#).unwrap(),
            ["--from=x", r#"a="b c""#, r"d\ e"]
        );
    }

    #[test]
    fn patterns_match_as_globs() {
        let g = |p: &str, s: &str| glob(&p.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>());
        assert!(g("*.txt", "a.txt") && !g("*.txt", "a.txt.gz"));
        assert!(g("[a-c]?", "bz") && !g("[!a-c]?", "bz") && g("[]]", "]"));
        assert!(g(r"\*", "*") && !g(r"\*", "a"));
    }
}

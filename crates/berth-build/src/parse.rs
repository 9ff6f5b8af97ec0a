//! A Dockerfile's text as instructions: parser directives (`# syntax=`,
//! `# escape=`, `# check=`), comments, line continuations (empty and
//! comment lines inside one are skipped), heredocs (`<<EOF`, `<<-EOF`,
//! quoted delimiters, several on one line), flags, and the JSON (exec)
//! form where an instruction has one. Words are not expanded here: that
//! needs the build's ARGs and ENVs (see [`crate::shell`]).

use crate::shell::Lexer;

/// An error of a Dockerfile, with its line: `Dockerfile:7: unknown
/// instruction: RUNN`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

/// What the parser directives said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=`: the frontend asked for.
    pub syntax: Option<String>,
    /// `# escape=`: `\` or `` ` ``.
    pub escape: char,
    /// `# check=`: the build checks' settings, as written.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives { syntax: None, escape: '\\', check: None }
    }
}

/// An instruction's arguments: the JSON (exec) form, or text as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    Json(Vec<String>),
    Text(String),
}

/// A heredoc an instruction carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// Its delimiter, the word after `<<`.
    pub name: String,
    /// Its lines, each ending in a newline; leading tabs gone for `<<-`.
    pub content: String,
    /// Whether variables in it are expanded: not when the delimiter is quoted.
    pub expand: bool,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The line it starts on (1-based), and the last line it takes.
    pub line: usize,
    pub end_line: usize,
    /// The instruction's name, upper case.
    pub keyword: String,
    /// Its `--name=value` flags, without the dashes, in order.
    pub flags: Vec<String>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The instruction as one line (continuations joined), for messages.
    pub original: String,
    /// ONBUILD's instruction.
    pub inner: Option<Box<Node>>,
}

/// A Dockerfile read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    pub nodes: Vec<Node>,
}

/// Every instruction the Dockerfile reference has.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Instructions whose arguments may be a JSON array.
const JSON_FORM: &[&str] = &["ADD", "CMD", "COPY", "ENTRYPOINT", "RUN", "SHELL", "VOLUME"];
/// Instructions that may carry heredocs.
const HEREDOC: &[&str] = &["ADD", "COPY", "RUN"];

/// The key (lower case) and value of a `# key=value` line.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?.trim();
    let (k, v) = rest.split_once('=')?;
    let k = k.trim();
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_owned()))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// `line` without its continuation (the escape character at its end,
/// after blanks), if it has one.
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end_matches([' ', '\t']);
    t.strip_suffix(escape)
}

/// The heredoc delimiters a line names: `<<EOF`, `<<-EOF`, `<<"EOF"`,
/// `<<'EOF'`, outside quotes; with whether each strips tabs and expands.
fn heredoc_markers(line: &str) -> Vec<(String, bool, bool)> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = vec![];
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '<' && chars.get(i + 1) == Some(&'<') && chars.get(i + 2) != Some(&'<') => {
                let mut j = i + 2;
                let strip = chars.get(j) == Some(&'-');
                if strip {
                    j += 1;
                }
                let q = chars.get(j).copied().filter(|c| *c == '"' || *c == '\'');
                if q.is_some() {
                    j += 1;
                }
                let start = j;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_' || chars[j] == '-') {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                let closed = match q {
                    Some(q) => chars.get(j) == Some(&q),
                    None => true,
                };
                if !name.is_empty() && closed && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    out.push((name, strip, q.is_none()));
                    i = if q.is_some() { j + 1 } else { j };
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    out
}

/// Read a Dockerfile; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let err = |line: usize, msg: String| ParseError { file: file.to_owned(), line, msg };
    let mut directives = Directives::default();
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    // Directives: at the very top, before any comment, blank line or
    // instruction; an unknown one is a comment, and ends them.
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else { break };
        if !["syntax", "escape", "check"].contains(&k.as_str()) {
            break;
        }
        if !seen.insert(k.clone()) {
            return Err(err(i + 1, format!("only one {k} parser directive can be used")));
        }
        match k.as_str() {
            "syntax" => directives.syntax = Some(v),
            "check" => directives.check = Some(v),
            _ => {
                directives.escape = match v.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err(err(i + 1, format!("invalid escape token '{v}' does not match ^[\\\\`]$"))),
                }
            }
        }
        i += 1;
    }
    let escape = directives.escape;
    let mut nodes = vec![];
    while i < lines.len() {
        let first = lines[i];
        if first.trim().is_empty() || is_comment(first) {
            i += 1;
            continue;
        }
        let start = i;
        let mut joined = String::new();
        let mut cur = first;
        loop {
            match continued(cur, escape) {
                Some(head) => {
                    joined.push_str(head);
                    i += 1;
                    // Comment and empty lines inside a continuation are skipped.
                    while i < lines.len() && (lines[i].trim().is_empty() || is_comment(lines[i])) {
                        i += 1;
                    }
                    if i >= lines.len() {
                        break;
                    }
                    cur = lines[i];
                }
                None => {
                    joined.push_str(cur);
                    break;
                }
            }
        }
        let end = i.min(lines.len().saturating_sub(1));
        i = end + 1;
        let (keyword, rest) = split_keyword(&joined);
        let mut heredocs = vec![];
        if HEREDOC.contains(&keyword.as_str()) {
            for (name, strip, expand) in heredoc_markers(&rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let mut l = lines[i];
                    i += 1;
                    if strip {
                        l = l.trim_start_matches('\t');
                    }
                    if l == name {
                        closed = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !closed {
                    return Err(err(start + 1, format!("unterminated heredoc {name}")));
                }
                heredocs.push(Heredoc { name, content, expand });
            }
        }
        let end_line = if heredocs.is_empty() { end + 1 } else { i };
        let node = node(file, start + 1, end_line, &keyword, &rest, heredocs, joined.trim(), escape)?;
        nodes.push(node);
    }
    Ok(Dockerfile { directives, nodes })
}

fn split_keyword(s: &str) -> (String, String) {
    let t = s.trim_start();
    let (k, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
    (k.to_ascii_uppercase(), rest.trim_start().to_owned())
}

#[allow(clippy::too_many_arguments)]
fn node(
    file: &str,
    line: usize,
    end_line: usize,
    keyword: &str,
    rest: &str,
    heredocs: Vec<Heredoc>,
    original: &str,
    escape: char,
) -> Result<Node, ParseError> {
    let err = |msg: String| ParseError { file: file.to_owned(), line, msg };
    if !INSTRUCTIONS.contains(&keyword) {
        return Err(err(format!("unknown instruction: {keyword}")));
    }
    let mut rest = rest.trim().to_owned();
    let mut flags = vec![];
    // Flags come first: `--name[=value]` words.
    while let Some(after) = rest.strip_prefix("--") {
        if after.is_empty() || after.starts_with(char::is_whitespace) {
            break;
        }
        let words = Lexer { escape }.split_raw(&rest).map_err(|e| err(e.0))?;
        let Some(word) = words.first() else { break };
        flags.push(word.trim_start_matches("--").to_owned());
        rest = rest[word.len()..].trim_start().to_owned();
    }
    let mut inner = None;
    if keyword == "ONBUILD" {
        let (k, r) = split_keyword(&rest);
        match k.as_str() {
            "" => return Err(err("ONBUILD requires an instruction".into())),
            "ONBUILD" => return Err(err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())),
            "FROM" | "MAINTAINER" => return Err(err(format!("{k} isn't allowed as an ONBUILD trigger"))),
            _ => {}
        }
        inner = Some(Box::new(node(file, line, end_line, &k, &r, vec![], rest.trim(), escape)?));
    }
    let args = match (JSON_FORM.contains(&keyword), rest.starts_with('[')) {
        (true, true) => match serde_json::from_str::<Vec<String>>(&rest) {
            Ok(v) => Args::Json(v),
            // Not a JSON array of strings: the shell form.
            Err(_) => Args::Text(rest),
        },
        _ => Args::Text(rest),
    };
    Ok(Node {
        line,
        end_line,
        keyword: keyword.to_owned(),
        flags,
        args,
        heredocs,
        original: original.to_owned(),
        inner,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn p(text: &str) -> Dockerfile {
        parse("Dockerfile", text).unwrap()
    }

    fn text(n: &Node) -> &str {
        match &n.args {
            Args::Text(t) => t,
            Args::Json(_) => "<json>",
        }
    }

    #[test]
    fn directives_continuations_and_comments() {
        let d = p("# syntax=docker/dockerfile:1\n# escape=`\n# unknown=x\n# escape=\\\nFROM busybox\nRUN echo a `\n  # a comment\n\n  b\n");
        assert_eq!(d.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.directives.escape, '`', "the unknown directive ends them; the second escape is a comment");
        assert_eq!(d.nodes.len(), 2);
        assert_eq!(text(&d.nodes[1]), "echo a   b");
        assert_eq!((d.nodes[1].line, d.nodes[1].end_line), (6, 9));
        let e = parse("Dockerfile", "FROM x\n\n# c\nRUNN true\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:4: unknown instruction: RUNN");
        let e = parse("Dockerfile", "# escape=x\nFROM a\n").unwrap_err();
        assert!(e.to_string().starts_with("Dockerfile:1: invalid escape token"), "{e}");
        let e = parse("Dockerfile", "# syntax=a\n# syntax=b\nFROM a\n").unwrap_err();
        assert_eq!(e.line, 2);
        // A directive after an instruction is a comment.
        let d = p("FROM a\n# escape=`\nRUN a \\\n b\n");
        assert_eq!((d.directives.escape, text(&d.nodes[1])), ('\\', "a  b"));
    }

    #[test]
    fn flags_and_the_json_form() {
        let d = p("from --platform=linux/amd64 busybox AS build\nCOPY --from=build --chown=1:1 [\"a b\", \"/c\"]\nRUN [\"sh\", \"-c\", \"x\"]\nRUN [not json\nCMD [\"a\", 1]\nENV A=[1]\n");
        assert_eq!(d.nodes[0].keyword, "FROM");
        assert_eq!(d.nodes[0].flags, ["platform=linux/amd64"]);
        assert_eq!(text(&d.nodes[0]), "busybox AS build");
        assert_eq!(d.nodes[1].flags, ["from=build", "chown=1:1"]);
        assert_eq!(d.nodes[1].args, Args::Json(vec!["a b".into(), "/c".into()]));
        assert_eq!(d.nodes[2].args, Args::Json(vec!["sh".into(), "-c".into(), "x".into()]));
        assert_eq!(text(&d.nodes[3]), "[not json");
        assert_eq!(text(&d.nodes[4]), "[\"a\", 1]", "not all strings: the shell form");
        assert_eq!(text(&d.nodes[5]), "A=[1]");
        let d = p("ONBUILD RUN --network=none echo hi\n");
        let inner = d.nodes[0].inner.as_ref().unwrap();
        assert_eq!(
            (inner.keyword.as_str(), inner.flags.as_slice(), text(inner)),
            ("RUN", &["network=none".to_owned()][..], "echo hi")
        );
        assert!(parse("D", "ONBUILD ONBUILD RUN x\n").is_err());
        assert!(parse("D", "ONBUILD FROM x\n").is_err());
    }

    #[test]
    fn heredocs() {
        let d = p("FROM a\nRUN <<EOF\necho one\necho $HOME\nEOF\nCOPY <<-\"A\" /a <<B /b\n\tfirst\n\tA\nsecond\nB\nRUN echo '<<NOT'\nRUN cat <<x <<y\n1\nx\n2\ny\n");
        assert_eq!(
            d.nodes[1].heredocs,
            [Heredoc { name: "EOF".into(), content: "echo one\necho $HOME\n".into(), expand: true }]
        );
        assert_eq!((d.nodes[1].line, d.nodes[1].end_line), (2, 5));
        assert_eq!(
            d.nodes[2].heredocs,
            [
                Heredoc { name: "A".into(), content: "first\n".into(), expand: false },
                Heredoc { name: "B".into(), content: "second\n".into(), expand: true }
            ]
        );
        assert!(d.nodes[3].heredocs.is_empty());
        assert_eq!(d.nodes[4].heredocs.len(), 2);
        let e = parse("Dockerfile", "FROM a\nRUN <<EOF\necho\n").unwrap_err();
        assert_eq!(e.to_string(), "Dockerfile:2: unterminated heredoc EOF");
    }
}

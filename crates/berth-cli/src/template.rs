//! The part of Go's text/template that `--format` uses, over JSON values:
//! fields (`.State.Pid`, `.`, `$`, `$var`), pipelines (`.Name | upper`),
//! `range` (with `$i, $v :=`), `if`/`else`, `with`, and the functions
//! Docker's CLI adds (json, join, split, upper, lower, title, truncate,
//! pad, println) beside Go's own (index, len, print, printf, eq, ne, lt,
//! le, gt, ge, not, and, or).

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(String);

fn err<T>(m: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(m.into()))
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If { cond: Pipe, then: Vec<Node>, other: Vec<Node> },
    With { cond: Pipe, then: Vec<Node>, other: Vec<Node> },
    Range { vars: Vec<String>, over: Pipe, body: Vec<Node>, other: Vec<Node> },
}

/// `$x := a | b c`: an optional variable and the commands.
#[derive(Debug, Clone)]
struct Pipe {
    decl: Option<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.A.B` (empty for `.`), from the dot.
    Field(Vec<String>),
    /// `$v.A.B`.
    Var(String, Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Ident(String),
    Sub(Pipe),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let toks = split(src)?;
        let mut pos = 0;
        let (nodes, end) = parse_list(&toks, &mut pos)?;
        if let Some(e) = end {
            return err(format!("unexpected {{{{{e}}}}}"));
        }
        Ok(Template { nodes })
    }

    pub fn render(&self, dot: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut vars = vec![("$".to_owned(), dot.clone())];
        exec(&self.nodes, dot, &mut vars, &mut out)?;
        Ok(out)
    }
}

enum Tok {
    Text(String),
    Action(String),
}

/// Text and `{{ … }}` actions, with `{{-` and `-}}` trimming spaces.
fn split(src: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(i) = rest.find("{{") {
        let mut text = &rest[..i];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[i + 2..];
        let trim_before = after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_before {
            text = text.trim_end();
        }
        if !text.is_empty() {
            out.push(Tok::Text(text.to_owned()));
        }
        let Some(j) = find_close(after) else { return err("unclosed action") };
        let mut inner = &after[..j];
        if trim_before {
            inner = &inner[1..];
        }
        trim_next = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next {
            inner = &inner[..inner.len() - 1];
        }
        let inner = inner.trim();
        if !inner.starts_with("/*") {
            out.push(Tok::Action(inner.to_owned()));
        }
        rest = &after[j + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Tok::Text(text.to_owned()));
    }
    Ok(out)
}

/// The `}}` that closes an action, skipping quoted strings.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 1 < b.len() || (quote.is_some() && i < b.len()) {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None if b[i] == b'"' || b[i] == b'`' => quote = Some(b[i]),
            None if b[i] == b'}' && b[i + 1] == b'}' => return Some(i),
            None => {}
        }
        i += 1;
    }
    None
}

/// Nodes until `end` or `else` (returned) or the end of input.
fn parse_list(toks: &[Tok], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < toks.len() {
        let t = &toks[*pos];
        *pos += 1;
        match t {
            Tok::Text(s) => nodes.push(Node::Text(s.clone())),
            Tok::Action(a) => {
                let (word, rest) = a.split_once(char::is_whitespace).unwrap_or((a.as_str(), ""));
                match word {
                    "end" => return Ok((nodes, Some("end".into()))),
                    "else" => return Ok((nodes, Some(format!("else {}", rest.trim())))),
                    "if" | "with" | "range" => nodes.push(parse_block(word, rest, toks, pos)?),
                    _ => nodes.push(Node::Action(parse_pipe(a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_block(word: &str, rest: &str, toks: &[Tok], pos: &mut usize) -> Result<Node, TemplateError> {
    let mut pipe = parse_pipe(rest)?;
    let (then, end) = parse_list(toks, pos)?;
    let mut other = Vec::new();
    match end.as_deref() {
        Some("end") => {}
        Some(e) if e.starts_with("else") => {
            let chained = e["else".len()..].trim();
            if chained.is_empty() {
                let (o, end2) = parse_list(toks, pos)?;
                if end2.as_deref() != Some("end") {
                    return err(format!("missing {{{{end}}}} for {word}"));
                }
                other = o;
            } else {
                // `{{else if …}}`: a nested block that shares this end.
                let (w, r) = chained.split_once(char::is_whitespace).unwrap_or((chained, ""));
                if !matches!(w, "if" | "with") {
                    return err(format!("unexpected else {chained}"));
                }
                other = vec![parse_block(w, r, toks, pos)?];
            }
        }
        _ => return err(format!("missing {{{{end}}}} for {word}")),
    }
    Ok(match word {
        "if" => Node::If { cond: pipe, then, other },
        "with" => Node::With { cond: pipe, then, other },
        _ => {
            let mut vars = Vec::new();
            if let Some(d) = pipe.decl.take() {
                vars = d.split(',').map(|v| v.trim().to_owned()).collect();
            }
            Node::Range { vars, over: pipe, body: then, other }
        }
    })
}

fn parse_pipe(src: &str) -> Result<Pipe, TemplateError> {
    let words = lex(src)?;
    let mut decl = None;
    let mut start = 0;
    if let Some(i) = words.iter().position(|w| w == ":=" || w == "=") {
        decl = Some(words[..i].concat());
        start = i + 1;
    }
    let mut cmds = Vec::new();
    let mut cur = Vec::new();
    let mut i = start;
    while i < words.len() {
        let w = &words[i];
        if w == "|" {
            if cur.is_empty() {
                return err("empty command in pipeline");
            }
            cmds.push(std::mem::take(&mut cur));
        } else {
            cur.push(parse_arg(w)?);
        }
        i += 1;
    }
    if cur.is_empty() {
        return err(format!("missing value in {{{{{src}}}}}"));
    }
    cmds.push(cur);
    Ok(Pipe { decl, cmds })
}

/// Splits an action into words: strings, parenthesized groups, `|`, `:=`.
fn lex(src: &str) -> Result<Vec<String>, TemplateError> {
    let mut out = Vec::new();
    let c: Vec<char> = src.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' || ch == '`' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != ch {
                if c[i] == '\\' && ch == '"' {
                    i += 1;
                }
                i += 1;
            }
            if i >= c.len() {
                return err("unterminated string");
            }
            i += 1;
            out.push(c[start..i].iter().collect());
        } else if ch == '(' {
            let start = i;
            let mut depth = 0;
            while i < c.len() {
                match c[i] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            if i >= c.len() {
                return err("unclosed parenthesis");
            }
            i += 1;
            let mut word: String = c[start..i].iter().collect();
            // `(…).Field`
            while i < c.len() && !c[i].is_whitespace() && c[i] != '|' {
                word.push(c[i]);
                i += 1;
            }
            out.push(word);
        } else if ch == '|' || ch == ',' {
            out.push(ch.to_string());
            i += 1;
        } else {
            let start = i;
            while i < c.len() && !c[i].is_whitespace() && c[i] != '|' && c[i] != ',' {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        }
    }
    // `$i, $v :=` lexes as `$i` `,` `$v` `:=`; keep the commas in the
    // declaration only.
    if let Some(d) = out.iter().position(|w| w == ":=" || w == "=") {
        let (decl, rest) = out.split_at(d);
        let mut v: Vec<String> = vec![decl.concat()];
        v.extend(rest.iter().cloned());
        return Ok(v);
    }
    Ok(out)
}

fn fields(path: &str) -> Vec<String> {
    path.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn parse_arg(w: &str) -> Result<Arg, TemplateError> {
    if let Some(s) = w.strip_prefix('"') {
        return serde_json::from_str::<String>(w)
            .map(Arg::Str)
            .or_else(|_| Ok(Arg::Str(s.trim_end_matches('"').to_owned())));
    }
    if let Some(s) = w.strip_prefix('`') {
        return Ok(Arg::Str(s.trim_end_matches('`').to_owned()));
    }
    if w.starts_with('(') {
        let close = w.rfind(')').unwrap_or(w.len() - 1);
        let inner = parse_pipe(&w[1..close])?;
        let rest = fields(&w[close + 1..]);
        if rest.is_empty() {
            return Ok(Arg::Sub(inner));
        }
        // `(pipe).Field`: evaluate then index, as a one-command pipe.
        return Ok(Arg::Sub(Pipe { decl: None, cmds: vec![vec![Arg::Sub(inner), Arg::Field(rest)]] }));
    }
    if let Some(p) = w.strip_prefix('.') {
        return Ok(Arg::Field(fields(p)));
    }
    if let Some(v) = w.strip_prefix('$') {
        let (name, path) = v.split_once('.').unwrap_or((v, ""));
        return Ok(Arg::Var(format!("${name}"), fields(path)));
    }
    match w {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        _ => {}
    }
    if let Ok(n) = w.parse::<f64>() {
        return Ok(Arg::Num(n));
    }
    if w.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Ok(Arg::Ident(w.to_owned()));
    }
    err(format!("unexpected {w:?}"))
}

type Vars = Vec<(String, Value)>;

fn exec(nodes: &[Node], dot: &Value, vars: &mut Vars, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        let mark = vars.len();
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = eval_pipe(p, dot, vars)?;
                if p.decl.is_none() {
                    out.push_str(&show(&v));
                }
                // A declaration lives to the end of the enclosing block.
                continue;
            }
            Node::If { cond, then, other } => {
                let v = eval_pipe(cond, dot, vars)?;
                exec(if truthy(&v) { then } else { other }, dot, vars, out)?;
            }
            Node::With { cond, then, other } => {
                let v = eval_pipe(cond, dot, vars)?;
                if truthy(&v) {
                    exec(then, &v, vars, out)?;
                } else {
                    exec(other, dot, vars, out)?;
                }
            }
            Node::Range { vars: names, over, body, other } => {
                let v = eval_pipe(over, dot, vars)?;
                let items: Vec<(Value, Value)> = match &v {
                    Value::Array(a) => a.iter().enumerate().map(|(i, x)| (Value::from(i), x.clone())).collect(),
                    Value::Object(m) => m.iter().map(|(k, x)| (Value::from(k.clone()), x.clone())).collect(),
                    Value::Null => Vec::new(),
                    Value::Number(n) => {
                        (0..n.as_u64().unwrap_or(0)).map(|i| (Value::from(i), Value::from(i))).collect()
                    }
                    other => return err(format!("range can't iterate over {}", show(other))),
                };
                if items.is_empty() {
                    exec(other, dot, vars, out)?;
                }
                for (k, x) in items {
                    let m = vars.len();
                    match names.as_slice() {
                        [v] => vars.push((v.clone(), x.clone())),
                        [k2, v] => {
                            vars.push((k2.clone(), k));
                            vars.push((v.clone(), x.clone()));
                        }
                        _ => {}
                    }
                    exec(body, &x, vars, out)?;
                    vars.truncate(m);
                }
            }
        }
        vars.truncate(mark);
    }
    Ok(())
}

fn eval_pipe(p: &Pipe, dot: &Value, vars: &mut Vars) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in &p.cmds {
        prev = Some(eval_cmd(cmd, prev.take(), dot, vars)?);
    }
    let v = prev.unwrap_or(Value::Null);
    if let Some(d) = &p.decl {
        vars.push((d.clone(), v.clone()));
    }
    Ok(v)
}

fn eval_cmd(cmd: &[Arg], piped: Option<Value>, dot: &Value, vars: &mut Vars) -> Result<Value, TemplateError> {
    let first = &cmd[0];
    if let Arg::Ident(name) = first {
        let mut args = Vec::new();
        for a in &cmd[1..] {
            args.push(eval_arg(a, dot, vars)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        return call(name, args);
    }
    // `(pipe).Field` is parsed as [Sub, Field].
    if let (Arg::Sub(_), Some(Arg::Field(path))) = (first, cmd.get(1)) {
        let base = eval_arg(first, dot, vars)?;
        return Ok(walk(&base, path));
    }
    if cmd.len() > 1 || piped.is_some() {
        return err("can't give arguments to a value");
    }
    eval_arg(first, dot, vars)
}

fn eval_arg(a: &Arg, dot: &Value, vars: &mut Vars) -> Result<Value, TemplateError> {
    Ok(match a {
        Arg::Field(p) => walk(dot, p),
        Arg::Var(name, p) => match vars.iter().rev().find(|(n, _)| n == name) {
            Some((_, v)) => walk(v, p),
            None => return err(format!("undefined variable {name}")),
        },
        Arg::Str(s) => Value::from(s.clone()),
        Arg::Num(n) => serde_json::Number::from_f64(*n).map(Value::Number).unwrap_or(Value::Null),
        Arg::Bool(b) => Value::Bool(*b),
        Arg::Ident(f) => call(f, Vec::new())?,
        Arg::Sub(p) => eval_pipe(p, dot, vars)?,
    })
}

fn walk(v: &Value, path: &[String]) -> Value {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(x) => cur = x,
            None => return Value::Null,
        }
    }
    cur.clone()
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// How Go prints a value with `{{.}}`.
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            format!("map[{}]", m.iter().map(|(k, x)| format!("{k}:{}", show(x))).collect::<Vec<_>>().join(" "))
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => show(other),
    }
}

fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn call(name: &str, a: Vec<Value>) -> Result<Value, TemplateError> {
    let arg = |i: usize| a.get(i).cloned().unwrap_or(Value::Null);
    let want = |n: usize| if a.len() < n { err(format!("{name} needs {n} arguments")) } else { Ok(()) };
    Ok(match name {
        "json" => {
            want(1)?;
            Value::from(serde_json::to_string(&arg(0)).map_err(|e| TemplateError(e.to_string()))?)
        }
        "index" => {
            want(1)?;
            let mut cur = arg(0);
            for k in &a[1..] {
                cur = match (&cur, k) {
                    (Value::Array(v), Value::Number(n)) => {
                        let i = n.as_f64().unwrap_or(-1.0);
                        match v.get(i as usize).filter(|_| i >= 0.0) {
                            Some(x) => x.clone(),
                            None => return err(format!("index out of range: {}", show(k))),
                        }
                    }
                    (Value::Object(m), Value::String(s)) => m.get(s).cloned().unwrap_or(Value::Null),
                    (Value::Null, _) => Value::Null,
                    _ => return err(format!("can't index {} with {}", show(&cur), show(k))),
                };
            }
            cur
        }
        "len" => {
            want(1)?;
            Value::from(match arg(0) {
                Value::Array(v) => v.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => return err(format!("len of {}", show(&other))),
            })
        }
        "join" => {
            want(2)?;
            let items = match arg(0) {
                Value::Array(v) => v.iter().map(text).collect::<Vec<_>>(),
                other => vec![text(&other)],
            };
            Value::from(items.join(&text(&arg(1))))
        }
        "split" => {
            want(2)?;
            let s = text(&arg(0));
            Value::from(s.split(&text(&arg(1))).map(|x| Value::from(x.to_owned())).collect::<Vec<_>>())
        }
        "upper" => Value::from(text(&arg(0)).to_uppercase()),
        "lower" => Value::from(text(&arg(0)).to_lowercase()),
        "title" => {
            let s = text(&arg(0));
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for ch in s.chars() {
                out.extend(if start { ch.to_uppercase().collect::<Vec<_>>() } else { vec![ch] });
                start = !ch.is_alphanumeric();
            }
            Value::from(out)
        }
        "truncate" => {
            want(2)?;
            let n = arg(1).as_f64().unwrap_or(0.0) as usize;
            Value::from(text(&arg(0)).chars().take(n).collect::<String>())
        }
        "pad" => {
            want(3)?;
            let l = " ".repeat(arg(1).as_f64().unwrap_or(0.0) as usize);
            let r = " ".repeat(arg(2).as_f64().unwrap_or(0.0) as usize);
            Value::from(format!("{l}{}{r}", text(&arg(0))))
        }
        "print" => Value::from(a.iter().map(show).collect::<Vec<_>>().join("")),
        "println" => Value::from(format!("{}\n", a.iter().map(show).collect::<Vec<_>>().join(" "))),
        "printf" => {
            want(1)?;
            Value::from(printf(&text(&arg(0)), &a[1..]))
        }
        "eq" => {
            want(2)?;
            Value::Bool(a[1..].iter().any(|x| cmp(&a[0], x) == Some(std::cmp::Ordering::Equal) || *x == a[0]))
        }
        "ne" => {
            want(2)?;
            Value::Bool(!(cmp(&a[0], &a[1]) == Some(std::cmp::Ordering::Equal) || a[0] == a[1]))
        }
        "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let Some(o) = cmp(&a[0], &a[1]) else { return err(format!("incompatible types for {name}")) };
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "not" => Value::Bool(!truthy(&arg(0))),
        "and" => {
            want(1)?;
            a.iter().find(|x| !truthy(x)).unwrap_or(&a[a.len() - 1]).clone()
        }
        "or" => {
            want(1)?;
            a.iter().find(|x| truthy(x)).unwrap_or(&a[a.len() - 1]).clone()
        }
        other => return err(format!("function {other:?} not defined")),
    })
}

/// `%s %d %v %q %%` and widths such as `%-10s`.
fn printf(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        while let Some(&n) = chars.peek() {
            if n == '-' || n.is_ascii_digit() || n == '.' {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        let Some(verb) = chars.next() else { break };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = it.next().cloned().unwrap_or(Value::Null);
        let s = match verb {
            'q' => serde_json::to_string(&text(&v)).unwrap_or_default(),
            _ => show(&v),
        };
        let left = spec.starts_with('-');
        let width: usize = spec.trim_start_matches('-').split('.').next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let pad = width.saturating_sub(s.chars().count());
        if left {
            out.push_str(&s);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&" ".repeat(pad));
            out.push_str(&s);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: &Value) -> String {
        Template::parse(t).unwrap().render(v).unwrap()
    }

    #[test]
    fn fields_and_json() {
        let v = json!({"State": {"Pid": 42, "Running": true}, "Config": {"Env": ["A=1"], "Labels": {"x": "y"}}});
        assert_eq!(r("{{.State.Pid}}", &v), "42");
        assert_eq!(r("pid={{ .State.Pid }} run={{.State.Running}}", &v), "pid=42 run=true");
        assert_eq!(r("{{json .Config.Env}}", &v), r#"["A=1"]"#);
        assert_eq!(r("{{.Config.Labels}}", &v), "map[x:y]");
        assert_eq!(r("{{.Nope.Deeper}}", &v), "<no value>");
        assert_eq!(r("{{index .Config.Labels \"x\"}}", &v), "y");
        assert_eq!(r("{{index .Config.Env 0}}", &v), "A=1");
        assert_eq!(r("{{.State.Pid | printf \"%5d\"}}", &v), "   42");
    }

    #[test]
    fn range_if_with() {
        let v = json!({"L": {"a": "1", "b": "2"}, "E": [], "N": ["x", "y"], "S": "up"});
        assert_eq!(r("{{range $k, $v := .L}}{{$k}}={{$v}};{{end}}", &v), "a=1;b=2;");
        assert_eq!(r("{{range .N}}[{{.}}]{{end}}", &v), "[x][y]");
        assert_eq!(r("{{range .E}}x{{else}}none{{end}}", &v), "none");
        assert_eq!(r("{{if eq .S \"up\"}}yes{{else}}no{{end}}", &v), "yes");
        assert_eq!(r("{{if eq .S \"down\"}}d{{else if .N}}n{{end}}", &v), "n");
        assert_eq!(r("{{with .L}}{{.a}}{{end}}", &v), "1");
        assert_eq!(r("{{join .N \",\"}} {{len .N}} {{upper .S}}", &v), "x,y 2 UP");
        assert_eq!(r("{{- range .N }} {{.}} {{- end}}", &v), " x y");
        assert_eq!(r("{{$x := .S}}{{$x}}!", &v), "up!");
        assert_eq!(r("{{(index .N 1) | upper}}", &v), "Y");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{.X").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{nosuch .X}}").unwrap().render(&json!({})).is_err());
        assert!(Template::parse("{{index .N 5}}").unwrap().render(&json!({"N": []})).is_err());
    }
}

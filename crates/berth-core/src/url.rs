//! The parts of URLs berth's servers read: percent-decoding, and a query
//! string (or a form body) as its pairs.

/// `s` with its `%XX` escapes decoded and `+` read as a space; a `%` that
/// does not begin an escape is kept as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k=v&k2=v2` (a query string or an `application/x-www-form-urlencoded`
/// body) as decoded pairs, in order.
pub fn query_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_pairs_decode() {
        assert_eq!(percent_decode("repository%3Aa%2Fb%3Apull+x"), "repository:a/b:pull x");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(
            query_pairs("a=1&&b=%2F&c"),
            [("a".into(), "1".into()), ("b".into(), "/".into()), ("c".into(), String::new())]
        );
    }
}

//! Sizes and durations as Docker prints and parses them (go-units).

/// go-units `HumanDuration`: "2 minutes", "About an hour".
pub fn human_duration(secs: i64) -> String {
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if (s as f64 / 3600.0).round() == 1.0 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", (s as f64 / 3600.0).round() as i64),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

/// go-units `HumanSize`: decimal units, four significant digits ("4.27MB").
pub fn human_size(bytes: f64) -> String {
    human_size_with_precision(bytes, 4)
}

/// go-units `HumanSizeWithPrecision`: decimal units, `digits` significant
/// digits (`docker stats` prints its I/O with three).
pub fn human_size_with_precision(bytes: f64, digits: usize) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"], digits)
}

/// go-units `BytesSize`: binary units ("1.5MiB"), as `docker stats` prints.
pub fn bytes_size(bytes: f64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"], 4)
}

fn scaled(bytes: f64, base: f64, units: &[&str], digits: usize) -> String {
    let mut v = bytes;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    format!("{}{}", significant(v, digits), units[i])
}

/// Go's `%.<digits>g` for 0 <= v < 10^digits: that many significant
/// digits, no trailing zeros.
fn significant(v: f64, digits: usize) -> String {
    let whole = if v >= 1.0 { v.log10().floor() as usize + 1 } else { 1 };
    let decimals = digits.saturating_sub(whole);
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// go-units `RAMInBytes`: "512m", "1.5g", "1024", "2GiB" (binary units).
pub fn ram_in_bytes(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return None,
    };
    let v = n * mult;
    (v.is_finite() && v >= 0.0 && v < i64::MAX as f64).then_some(v as i64)
}

/// Go's `time.ParseDuration` for what Docker's flags take: a sequence of
/// decimal numbers with units (`30s`, `1m30s`, `1.5h`, `500ms`), in
/// nanoseconds. `None` for anything else, a negative value included.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[u..];
    }
    (total < i64::MAX as f64).then_some(total as i64)
}

/// Go's `time.Duration.String`: `1m30s`, `1.5s`, `500ms`, `0s`, as Docker
/// prints a duration in messages.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let d = nanos.unsigned_abs();
    // A whole part and a fraction of `digits` decimals, zeros trimmed.
    let fixed = |whole: u64, frac: u64, digits: usize| {
        let f = format!("{frac:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if d < 1_000_000_000 {
        let (unit, scale, digits) = match d {
            d if d < 1_000 => ("ns", 1, 0),
            d if d < 1_000_000 => ("\u{b5}s", 1_000, 3),
            _ => ("ms", 1_000_000, 6),
        };
        return format!("{sign}{}{unit}", fixed(d / scale, d % scale, digits));
    }
    let secs = d / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let s = fixed(s, d % 1_000_000_000, 9);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_durations_parse_and_print_as_go_does() {
        for (text, n) in [
            ("30s", 30_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5s", 1_500_000_000),
            ("500ms", 500_000_000),
            ("2h", 7_200_000_000_000),
            ("0", 0),
            ("10us", 10_000),
        ] {
            assert_eq!(parse_go_duration(text), Some(n), "{text}");
        }
        for bad in ["", "10", "1d", "-1s", "s", "1.2.3s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
        for (n, text) in [
            (0, "0s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (1_500_000_000, "1.5s"),
            (500_000_000, "500ms"),
            (3_600_000_000_000, "1h0m0s"),
            (1_500, "1.5\u{b5}s"),
            (7, "7ns"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(n), text, "{n}");
        }
    }

    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(4_270_000.0), "4.27MB");
        assert_eq!(human_size(1_234_567_890.0), "1.235GB");
        assert_eq!(human_size_with_precision(1_982_000.0, 3), "1.98MB");
        assert_eq!(human_size_with_precision(0.0, 3), "0B");
        assert_eq!(bytes_size(1536.0 * 1024.0), "1.5MiB");
        assert_eq!(ram_in_bytes("512m"), Some(512 << 20));
        assert_eq!(ram_in_bytes("1.5g"), Some(3 << 29));
        assert_eq!(ram_in_bytes("1024"), Some(1024));
        assert_eq!(ram_in_bytes("2GiB"), Some(2 << 30));
        assert_eq!(ram_in_bytes("10x"), None);
        assert_eq!(ram_in_bytes("-1"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(61), "About a minute");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
    }
}

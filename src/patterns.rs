//! Regular-expression pieces the published schemas share (the OpenAPI
//! document's parameters, the AsyncAPI document's message schemas), written
//! so that every regex dialect a reader's validator uses (ECMA-262, Python,
//! Rust) reads them alike.

/// The characters `str::trim` removes (Unicode White_Space), as the body
/// of a regex class of literal characters: `\s` means another set in each
/// dialect, literal characters mean the same in all.
pub const WS_CHARS: &str = "\t\n\u{0B}\u{0C}\r \u{85}\u{A0}\u{1680}\u{2000}-\u{200A}\u{2028}\u{2029}\u{202F}\u{205F}\u{3000}";

/// One whitespace character, as `str::trim` counts them.
pub fn ws() -> String {
    format!("[{WS_CHARS}]")
}

/// A regex (no anchors) of the decimal numbers `lo..=max` without leading
/// zeros, `lo` being 0 or 1.
pub fn range_regex(lo: u64, max: u64) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    let mut alts = Vec::new();
    if lo == 0 {
        alts.push("0".to_owned());
    }
    // Fewer digits than max: any.
    if n >= 2 {
        alts.push(format!("[1-9][0-9]{{0,{}}}", n - 2));
    }
    // As many digits: max's first i digits, then a smaller one, then any.
    for i in 0..n {
        let low = if i == 0 { 1 } else { 0 };
        if digits[i] > low {
            let head: String = digits[..i].iter().map(|d| d.to_string()).collect();
            let d = digits[i] - 1;
            let class = if d == low {
                d.to_string()
            } else {
                format!("[{low}-{d}]")
            };
            let tail = match n - i - 1 {
                0 => String::new(),
                1 => "[0-9]".to_owned(),
                r => format!("[0-9]{{{r}}}"),
            };
            alts.push(format!("{head}{class}{tail}"));
        }
    }
    alts.push(max.to_string());
    format!("(?:{})", alts.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn range_regexes_are_exact() {
        for max in [3u64, 9, 10, 99, 100, 120, 2147483647, 31536000, u64::MAX] {
            for lo in [0, 1] {
                let re = format!("^{}$", range_regex(lo, max));
                let schema =
                    jsonschema::validator_for(&json!({"type": "string", "pattern": re})).unwrap();
                let probes = (0..=1000u64)
                    .chain([max - 1, max, 2147483648])
                    .map(|n| (n.to_string(), n >= lo && n <= max))
                    .chain([
                        (format!("{max}0"), false),
                        ((u128::from(max) + 1).to_string(), false),
                        ("01".to_owned(), false),
                    ]);
                for (n, want) in probes {
                    assert_eq!(schema.is_valid(&json!(n)), want, "{lo}..={max}: {n}");
                }
            }
        }
    }

    #[test]
    fn the_whitespace_class_is_what_trim_removes() {
        let schema =
            jsonschema::validator_for(&json!({"type": "string", "pattern": format!("^{}$", ws())}))
                .unwrap();
        for c in (0u32..0x3100).filter_map(char::from_u32) {
            assert_eq!(
                schema.is_valid(&json!(c.to_string())),
                c.is_whitespace(),
                "U+{:04X}",
                c as u32
            );
        }
    }
}

//! Phone numbers: the one place that decides what a full number is and how a
//! number is shown in logs.
//!
//! The contract's rules: strip spaces and dashes; strip a leading `+86`,
//! `0086` or `86` when what remains is a mainland mobile number (11 digits
//! starting with 1); keep any other all-digit number of 5-20 digits as given;
//! everything else (letters, `*`, another country's `+` code) is not a full
//! number. Logs only ever see [`mask`]ed numbers.

use std::fmt;

/// Why a string is not a full phone number. The variants carry no number, so
/// an error can be logged or put in a dead-letter header as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error("is masked (contains '*')")]
    Masked,
    #[error("is not a full number (5-20 digits, optionally +86/0086/86 before a mobile number)")]
    Invalid,
}

/// Normalizes a phone number as the contract says, or tells why it is not a
/// full number.
pub fn normalize(raw: &str) -> Result<String, PhoneError> {
    // Whitespace around the number (what `str::trim` removes, the one rule
    // every published schema states), then spaces and dashes anywhere.
    let s: String = raw
        .trim()
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .collect();
    if s.is_empty() {
        return Err(PhoneError::Empty);
    }
    if s.contains('*') {
        return Err(PhoneError::Masked);
    }
    for prefix in ["+86", "0086", "86"] {
        if let Some(rest) = s.strip_prefix(prefix)
            && is_mainland_mobile(rest)
        {
            return Ok(rest.to_owned());
        }
    }
    if (5..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s)
    } else {
        Err(PhoneError::Invalid)
    }
}

fn is_mainland_mobile(s: &str) -> bool {
    s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit())
}

/// A number as it may appear in a log line: the first 3 and last 4 characters
/// with `****` between (`189****8352`), as the contact-center seed shows.
/// Strings shorter than 10 characters are hidden entirely (first 3 and
/// last 4 of an 8-digit number would show 7 of its digits).
pub fn mask(raw: &str) -> Masked<'_> {
    Masked(raw)
}

/// Display adapter returned by [`mask`]; formats without allocating.
pub struct Masked<'a>(&'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 10 {
            return f.write_str("****");
        }
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        write!(f, "{head}****{tail}")
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Masks every phone number in free text (an error message, a JSON body
/// shown to an operator, a whole log line), so that no full number escapes
/// through text the worker did not build itself. A phone number is a run of
/// digits that is a mainland mobile (11 digits starting with 1, bare or after
/// 86 / 0086), a landline with its area code (10 to 12 digits starting with
/// 0), or a local number of 7 or 8 digits. Other runs stay readable, so that
/// an operator can search logs by them: subIds (16 digits), callIds, epoch
/// seconds and milliseconds, 9-digit ids. A number may be
/// written with single spaces or dashes between its digits (`139-1111-2222`,
/// `139 1111 2222`), as the normalizer accepts it; its separators stay and
/// its middle digits become `*`. A date written `YYYY-MM-DD` is not a number.
/// A mainland mobile (bare or after 86 / 0086) is masked also when its
/// digits are split by dots, underscores or slashes (`138.0000.0001`) or
/// written in full-width digits (`１３８…`); other runs with those
/// separators (times' fractions, addresses, versions) are judged piece by
/// piece, as without them.
pub fn mask_digits_in(text: &str) -> String {
    mask_runs(text, true, is_phone_digits)
}

/// Whether `digits` (ASCII) are a phone number by [`mask_digits_in`]'s rule.
fn is_phone_digits(digits: &str) -> bool {
    let n = digits.len();
    is_mobile_digits(digits)
        || (7..=8).contains(&n)
        || (digits.starts_with('0') && (10..=12).contains(&n))
}

/// A digit as input may write it: ASCII or full-width (`０`-`９`).
fn digit_value(c: char) -> Option<char> {
    match c {
        '0'..='9' => Some(c),
        '\u{FF10}'..='\u{FF19}' => char::from_u32(c as u32 - 0xFF10 + u32::from(b'0')),
        _ => None,
    }
}

/// Separators a number may be written with, as the normalizer accepts them.
fn is_plain_separator(c: char) -> bool {
    c == ' ' || c == '-'
}

/// Separators only a phone number is recognised through.
fn is_other_separator(c: char) -> bool {
    matches!(c, '.' | '_' | '/' | '\u{3000}' | '\u{FF0D}' | '\u{FF0E}')
}

/// Whether `digits` (ASCII) are a mainland mobile, bare or after 86 / 0086.
fn is_mobile_digits(digits: &str) -> bool {
    ["", "86", "0086"].iter().any(|p| {
        digits
            .strip_prefix(p)
            .is_some_and(|rest| rest.len() == 11 && rest.starts_with('1'))
    })
}

/// Rewrites each run of digits of `text` (single separators allowed between
/// digits) for which `mask` holds, given the run's digits; a date
/// `YYYY-MM-DD` is left as it is when `skip_dates`. A run starts at a digit
/// that follows no digit. A run with separators other than spaces and dashes
/// is masked whole when it is a mobile number, else piece by piece.
fn mask_runs(text: &str, skip_dates: bool, mask: impl Fn(&str) -> bool) -> String {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |k: usize| chars.get(k).map_or(text.len(), |&(b, _)| b);
    let is_digit = |k: usize| chars.get(k).is_some_and(|&(_, c)| digit_value(c).is_some());
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // text[..copied] is in `out`
    let mut emit = |out: &mut String, from: usize, to: usize, digits: usize| {
        out.push_str(&text[copied..from]);
        out.push_str(&mask_number(&text[from..to], digits));
        copied = to;
    };
    let mut i = 0;
    while i < chars.len() {
        if !is_digit(i) || (i > 0 && is_digit(i - 1)) {
            i += 1;
            continue;
        }
        // The longest run with any separator, then judged.
        let start = i;
        let (mut end, mut j, mut other) = (i, i, false);
        while j < chars.len() {
            let c = chars[j].1;
            if digit_value(c).is_some() {
                j += 1;
                end = j;
            } else if (is_plain_separator(c) || is_other_separator(c)) && is_digit(j + 1) {
                other |= is_other_separator(c);
                j += 1;
            } else {
                break;
            }
        }
        let digits_of = |from: usize, to: usize| -> String {
            chars[from..to]
                .iter()
                .filter_map(|&(_, c)| digit_value(c))
                .collect()
        };
        let whole = digits_of(start, end);
        if other && is_mobile_digits(&whole) {
            emit(&mut out, at(start), at(end), whole.len());
            i = end;
            continue;
        }
        // Piece by piece, each piece a run joined by spaces and dashes only;
        // a date at the start of one is skipped and the rest judged alone.
        let mut k = start;
        while k < end {
            let mut piece_end = k;
            while piece_end < end && !is_other_separator(chars[piece_end].1) {
                piece_end += 1;
            }
            let mut p = k;
            while p < piece_end {
                if !is_digit(p) {
                    p += 1;
                    continue;
                }
                if skip_dates && is_date(&text.as_bytes()[at(p)..at(piece_end)]) {
                    p += 10;
                    continue;
                }
                let digits = digits_of(p, piece_end);
                if mask(&digits) {
                    emit(&mut out, at(p), at(piece_end), digits.len());
                }
                break;
            }
            k = piece_end + 1;
        }
        i = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Masks the phone numbers in text shown to an operator (a dead letter's
/// body in a listing): a run of digits (separators allowed between them as
/// in [`mask_digits_in`]) that is a mainland mobile, bare or after 86 /
/// 0086. Other runs (subIds, callIds, epoch seconds, dates) stay readable.
/// Logs use [`mask_digits_in`], which also masks landlines and 7-8 digit
/// local numbers.
pub fn mask_phones_in(text: &str) -> String {
    mask_runs(text, false, is_mobile_digits)
}

/// `YYYY-MM-DD` at the start of `run`.
fn is_date(run: &[u8]) -> bool {
    run.len() >= 10
        && run[4] == b'-'
        && run[7] == b'-'
        && [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .all(|&k| run[k].is_ascii_digit())
        && run.get(10).is_none_or(|c| !c.is_ascii_digit())
}

/// One number of `digits` digits: as [`mask`] when written without
/// separators; else its first 3 and last 4 digits shown, separators kept.
fn mask_number(run: &str, digits: usize) -> String {
    if digits == run.len() {
        return mask(run).to_string();
    }
    let mut seen = 0;
    run.chars()
        .map(|c| {
            if digit_value(c).is_none() {
                return c;
            }
            seen += 1;
            if digits >= 10 && (seen <= 3 || seen > digits - 4) {
                c
            } else {
                '*'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainland_forms_normalize_to_eleven_digits() {
        for raw in [
            "13988888888",
            "+8613988888888",
            "008613988888888",
            "8613988888888",
            "139 8888 8888",
            "139-8888-8888",
            "+86 139-8888-8888",
        ] {
            assert_eq!(normalize(raw), Ok("13988888888".to_owned()), "{raw}");
        }
    }

    #[test]
    fn other_digit_strings_are_kept_as_given() {
        assert_eq!(normalize("02112345678"), Ok("02112345678".into()));
        assert_eq!(normalize("12345"), Ok("12345".into()));
        assert_eq!(normalize("95555"), Ok("95555".into()));
        // 86 followed by something that is not a mobile number stays as it is.
        assert_eq!(normalize("8612345"), Ok("8612345".into()));
        assert_eq!(normalize("008612345"), Ok("008612345".into()));
        assert_eq!(
            normalize("12345678901234567890"),
            Ok("12345678901234567890".into())
        );
    }

    #[test]
    fn non_numbers_are_rejected_with_a_reason() {
        assert_eq!(normalize(""), Err(PhoneError::Empty));
        assert_eq!(normalize(" - "), Err(PhoneError::Empty));
        assert_eq!(normalize("1347011****"), Err(PhoneError::Masked));
        assert_eq!(normalize("1234"), Err(PhoneError::Invalid));
        assert_eq!(normalize("123456789012345678901"), Err(PhoneError::Invalid));
        assert_eq!(normalize("1398888888a"), Err(PhoneError::Invalid));
        assert_eq!(normalize("+4915112345678"), Err(PhoneError::Invalid));
        assert_eq!(normalize("+86123"), Err(PhoneError::Invalid));
        assert_eq!(
            normalize("１３９８８８８８８８８"),
            Err(PhoneError::Invalid)
        );
    }

    #[test]
    fn mask_keeps_first_three_and_last_four() {
        assert_eq!(mask("18912348352").to_string(), "189****8352");
        assert_eq!(mask("008613988888888").to_string(), "008****8888");
        assert_eq!(mask("1234567").to_string(), "****");
        assert_eq!(mask("").to_string(), "****");
    }

    #[test]
    fn listings_mask_phones_but_keep_ids_and_times_readable() {
        assert_eq!(
            mask_phones_in(
                r#"{"telX":"17111526089","subId":"1000039976446302","at":1763892000,"b":"139-1111-2222","c":"+8613988888888"}"#
            ),
            r#"{"telX":"171****6089","subId":"1000039976446302","at":1763892000,"b":"139-****-2222","c":"+861****8888"}"#
        );
        assert_eq!(
            mask_phones_in("user 74705, call 2026-11-23 10:00"),
            "user 74705, call 2026-11-23 10:00"
        );
    }

    #[test]
    fn mask_digits_in_hides_numbers_inside_text() {
        assert_eq!(
            mask_digits_in(r#"{"telX":"17111526089","platId":3}"#),
            r#"{"telX":"171****6089","platId":3}"#
        );
        assert_eq!(mask_digits_in("user 74705 ok"), "user 74705 ok");
        for (raw, shown) in [
            ("call 139-1111-2222 now", "call 139-****-2222 now"),
            ("call 139 1111 2222", "call 139 **** 2222"),
            ("+86 139 1111 2222", "+86 1** **** 2222"),
            // Ids and times are no phone numbers: searchable as written.
            ("id 1000039976446302", "id 1000039976446302"),
            (
                "sim-1000039976446302 at 1763892000 / 1763892000123",
                "sim-1000039976446302 at 1763892000 / 1763892000123",
            ),
            ("id 123456789", "id 123456789"),
            // Landlines, with or without their area code.
            ("tel 0571-88888888", "tel 057*-****8888"),
            ("tel 01012345678", "tel 010****5678"),
            ("tel 88888888", "tel ****"),
            ("Mode \"13988888888\"", "Mode \"139****8888\""),
            ("7-digit 1234567 run", "7-digit **** run"),
            ("12-34-56-7 x", "**-**-**-* x"),
            // A mobile however its digits are split or written.
            ("act 138.0000.0001 x", "act 138.****.0001 x"),
            ("a_138_0000_0001", "a_138_****_0001"),
            ("138/0000/0001", "138/****/0001"),
            ("86.138.0000.0001", "86.1**.****.0001"),
            ("１３８０００００００１", "１３８****０００１"),
            ("１３８－００００－０００１", "１３８－****－０００１"),
            ("at 2026-11-23 13988888888", "at 2026-11-23 139****8888"),
            // Not mobiles: judged piece by piece, as without the dots.
            ("v 1.2.3 id 100.1234567", "v 1.2.3 id 100.****"),
        ] {
            assert_eq!(mask_digits_in(raw), shown, "{raw}");
        }
        // Dates, times and small numbers stay readable; text is kept whole.
        for same in [
            "2026-11-25T06:17:01.123456Z",
            "started 2026-11-23 10:00:00, 3 of 10 in 1200 ms",
            "127.0.0.1:5672 中文 ok",
            "v 1.2.3 build 2026.1125, 10.25 ms, /a/12/b_3",
            "",
        ] {
            assert_eq!(mask_digits_in(same), same);
        }
    }
}

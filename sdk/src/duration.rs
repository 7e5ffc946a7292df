//! Go duration strings, as KrakenD writes every timeout: `"5s"`, `"1h30m"`, `".5s"`, `"300µs"`.
//!
//! [`parse_duration`] accepts exactly what Go's `time.ParseDuration` accepts and gives the same
//! value, down to how it truncates fractions with more digits than a nanosecond can hold, so a
//! config that works with KrakenD reads the same here. A plugin's own config can take
//! durations the same way, as a [`GoDuration`] field:
//!
//! ```
//! use redplug::duration::GoDuration;
//!
//! #[derive(serde::Deserialize)]
//! struct LimitConfig {
//!     window: GoDuration,
//! }
//!
//! let config: LimitConfig = serde_json::from_str(r#"{"window": "1m30s"}"#).unwrap();
//! assert_eq!(config.window.to_std(), Some(std::time::Duration::from_secs(90)));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A signed span of time held the way Go's `time.Duration` holds it: nanoseconds in an `i64`.
///
/// Config keys such as `conn_max_idle_time` give meaning to zero and negative values, so the
/// sign has to survive parsing; [`GoDuration::to_std`] converts once the sign has been handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(i64);

impl GoDuration {
    /// Zero length.
    pub const ZERO: Self = Self(0);
    /// The longest duration Go can represent, `2562047h47m16.854775807s`.
    pub const MAX: Self = Self(i64::MAX);
    /// The most negative duration Go can represent.
    pub const MIN: Self = Self(i64::MIN);

    /// A duration of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// The length in nanoseconds, negative for negative durations.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// Whether the duration is below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Whether the duration is exactly zero.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The duration as a [`Duration`], or `None` when it is negative.
    pub const fn to_std(self) -> Option<Duration> {
        if self.0 < 0 {
            None
        } else {
            Some(Duration::from_nanos(self.0.unsigned_abs()))
        }
    }

    /// The duration without its sign.
    pub const fn unsigned_abs(self) -> Duration {
        Duration::from_nanos(self.0.unsigned_abs())
    }

    /// Converts a [`Duration`], or `None` when it is longer than Go's ~292 years.
    pub fn from_std(duration: Duration) -> Option<Self> {
        i64::try_from(duration.as_nanos()).ok().map(Self)
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s)
    }
}

/// Reads a Go duration string; the error says what is wrong with it and shows a valid one.
impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration: {e}")))
    }
}

/// Why a string is not a Go duration. Each message says what is wrong and shows a valid value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("an empty string is not a duration; write a number and a unit, such as \"5s\"")]
    Empty,
    /// Nothing follows the leading `+` or `-`.
    #[error("nothing follows the sign; write a number and a unit after it, such as \"-5s\"")]
    SignOnly,
    /// A number was expected at byte `at` but `found` is there.
    #[error(
        "found `{found}` at byte {at} where a number should start; a duration is one or more \
         numbers each followed by a unit, such as \"1h30m\" (only the very start may carry a sign)"
    )]
    UnexpectedChar {
        /// Byte offset into the string.
        at: usize,
        /// The character found there.
        found: char,
    },
    /// A `.` with no digit on either side.
    #[error("the `.` at byte {at} has no digits around it; write \"0.5s\" or \".5s\"")]
    NoDigits {
        /// Byte offset of the `.`.
        at: usize,
    },
    /// A number is not followed by a unit. Only a lone `"0"` may go without one.
    #[error(
        "the number `{number}` has no unit; add one of ns, us, µs, ms, s, m, h, as in \"{number}s\""
    )]
    MissingUnit {
        /// The number as written.
        number: String,
    },
    /// The unit is not one Go knows (`d` for days is a common case).
    #[error(
        "{unit:?} is not a unit; use ns, us (or µs), ms, s, m or h, as in \"36h\" for a day and a \
         half"
    )]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// The total does not fit Go's signed 64-bit nanoseconds.
    #[error(
        "the duration is too long: Go durations reach at most about 292 years \
         (\"2562047h47m16.854775807s\"); write something like \"24h\""
    )]
    Overflow,
}

/// Go's units, with both spellings of the micro sign (U+00B5 and U+03BC).
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// `1 << 63`: the magnitude of `i64::MIN`, the largest a negative Go duration may reach.
const LIMIT: u64 = 1 << 63;

/// Parses a Go duration string such as `"300ms"`, `"-1.5h"` or `"2h45m30.5s"`, following
/// Go's `time.ParseDuration` exactly.
pub fn parse_duration(s: &str) -> Result<GoDuration, DurationError> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    if let Some(&sign @ (b'-' | b'+')) = bytes.first() {
        negative = sign == b'-';
        pos = 1;
    }
    // Go's one special case: a bare zero needs no unit.
    if &bytes[pos..] == b"0" {
        return Ok(GoDuration::ZERO);
    }
    if pos == bytes.len() {
        return Err(if pos == 0 {
            DurationError::Empty
        } else {
            DurationError::SignOnly
        });
    }

    // Go accumulates in a u64 and checks against 1<<63 after each step. Its final addition can
    // wrap around in a u64 for absurd inputs; the checked addition here rejects those instead.
    let mut total: u64 = 0;
    while pos < bytes.len() {
        let start = pos;
        let c = bytes[pos];
        if !(c == b'.' || c.is_ascii_digit()) {
            let found = s.get(pos..).and_then(|r| r.chars().next()).unwrap_or('?');
            return Err(DurationError::UnexpectedChar { at: pos, found });
        }

        let (whole, after_int) = leading_int(bytes, pos).ok_or(DurationError::Overflow)?;
        let has_int = after_int > pos;
        pos = after_int;

        let mut frac = 0u64;
        let mut scale = 1f64;
        let mut has_frac = false;
        if bytes.get(pos) == Some(&b'.') {
            let (f, sc, after_frac) = leading_fraction(bytes, pos + 1);
            has_frac = after_frac > pos + 1;
            (frac, scale) = (f, sc);
            pos = after_frac;
        }
        if !has_int && !has_frac {
            return Err(DurationError::NoDigits { at: start });
        }

        let unit_start = pos;
        while pos < bytes.len() && !(bytes[pos] == b'.' || bytes[pos].is_ascii_digit()) {
            pos += 1;
        }
        // Both ends sit next to ASCII bytes (or the string's ends), so they are char boundaries.
        let number = &s[start..unit_start];
        if pos == unit_start {
            return Err(DurationError::MissingUnit {
                number: number.to_owned(),
            });
        }
        let unit_text = &s[unit_start..pos];
        let Some(&(_, unit)) = UNITS.iter().find(|(name, _)| *name == unit_text) else {
            return Err(DurationError::UnknownUnit {
                unit: unit_text.to_owned(),
            });
        };

        if whole > LIMIT / unit {
            return Err(DurationError::Overflow);
        }
        let mut value = whole * unit;
        if frac > 0 {
            // Go computes the fraction in floating point (exact to the nanosecond even for
            // fractions of hours) and truncates; the same operations give the same bits here.
            value += (frac as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(DurationError::Overflow);
            }
        }
        total = match total.checked_add(value) {
            Some(t) if t <= LIMIT => t,
            _ => return Err(DurationError::Overflow),
        };
    }

    if negative {
        // total <= 1<<63, so the negation fits; 1<<63 itself is i64::MIN.
        Ok(GoDuration(0i64.wrapping_sub_unsigned(total)))
    } else {
        i64::try_from(total)
            .map(GoDuration)
            .map_err(|_| DurationError::Overflow)
    }
}

/// Go's `leadingInt`: the digits at `pos` as a number and the index after them, or `None` when
/// the number passes `1 << 63`.
fn leading_int(bytes: &[u8], mut pos: usize) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    while let Some(&c) = bytes.get(pos).filter(|c| c.is_ascii_digit()) {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
        pos += 1;
    }
    Some((x, pos))
}

/// Go's `leadingFraction`: the digits at `pos` as `value / scale` and the index after them.
/// Digits past what a u64 can hold are skipped, not rounded, exactly as Go does.
fn leading_fraction(bytes: &[u8], mut pos: usize) -> (u64, f64, usize) {
    let mut x: u64 = 0;
    let mut scale = 1f64;
    let mut overflow = false;
    while let Some(&c) = bytes.get(pos).filter(|c| c.is_ascii_digit()) {
        pos += 1;
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, pos)
}

impl fmt::Display for GoDuration {
    /// Writes the duration as Go's `Duration.String` does: `"1h30m0s"`, `"1.5s"`, `"300ms"`,
    /// `"0s"`, so messages show values in the form the config is written in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if self.0 < 0 {
            out.push('-');
        }
        let u = self.0.unsigned_abs();
        if u < 1_000_000_000 {
            let (prec, unit) = match u {
                0 => return f.write_str("0s"),
                1..1_000 => (0, "ns"),
                1_000..1_000_000 => (3, "\u{b5}s"),
                _ => (6, "ms"),
            };
            push_decimal(&mut out, u, prec);
            out.push_str(unit);
        } else {
            let secs = u / 1_000_000_000;
            let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
            if hours > 0 {
                out.push_str(&format!("{hours}h"));
            }
            if secs >= 60 {
                out.push_str(&format!("{minutes}m"));
            }
            push_decimal(&mut out, seconds * 1_000_000_000 + u % 1_000_000_000, 9);
            out.push('s');
        }
        f.write_str(&out)
    }
}

/// Writes `value / 10^prec` with trailing zeros of the fraction (and a bare `.`) left out.
fn push_decimal(out: &mut String, value: u64, prec: u32) {
    let div = 10u64.pow(prec);
    out.push_str(&(value / div).to_string());
    let frac = value % div;
    if frac > 0 {
        let digits = format!("{frac:0width$}", width = prec as usize);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    /// Inputs Go accepts, with the value Go's `time.ParseDuration` returns (Go's own test table
    /// plus the forms KrakenD configs use).
    const VALID: &[(&str, i64)] = &[
        ("0", 0),
        ("+0", 0),
        ("-0", 0),
        ("5s", 5 * S),
        ("30s", 30 * S),
        ("1478s", 1478 * S),
        ("-5s", -5 * S),
        ("+5s", 5 * S),
        ("0s", 0),
        ("-0s", 0),
        ("5.0s", 5 * S),
        ("5.6s", 5 * S + 600 * MS),
        ("5.s", 5 * S),
        ("1.s", S),
        (".5s", 500 * MS),
        ("1.0s", S),
        ("1.00s", S),
        ("1.004s", S + 4 * MS),
        ("1.0040s", S + 4 * MS),
        ("100.00100s", 100 * S + MS),
        ("10ns", 10 * NS),
        ("11us", 11 * US),
        ("12\u{b5}s", 12 * US),
        ("12\u{3bc}s", 12 * US),
        ("13ms", 13 * MS),
        ("300ms", 300 * MS),
        ("14s", 14 * S),
        ("15m", 15 * M),
        ("16h", 16 * H),
        ("-1.5h", -(H + 30 * M)),
        ("3h30m", 3 * H + 30 * M),
        ("1h30m", H + 30 * M),
        ("2h45m30.5s", 2 * H + 45 * M + 30 * S + 500 * MS),
        ("10.5s4m", 4 * M + 10 * S + 500 * MS),
        ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
        (
            "1h2m3s4ms5us6ns",
            H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
        ),
        ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
        ("1h15m30.918273645s", H + 15 * M + 30 * S + 918_273_645),
        ("52763797000ns", 52_763_797_000),
        ("0.3333333333333333333h", 20 * M),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", i64::MAX),
        ("9223372036854775.807us", i64::MAX),
        ("9223372036s854ms775us807ns", i64::MAX),
        ("-9223372036854775807ns", -i64::MAX),
        ("-9223372036854775808ns", i64::MIN),
        ("-9223372036854775.808us", i64::MIN),
        ("-9223372036s854ms775us808ns", i64::MIN),
        ("-2562047h47m16.854775808s", i64::MIN),
        ("0.100000000000000000000h", 6 * M),
        ("0.830103483285477580700h", 49 * M + 48 * S + 372_539_827),
        ("1.0000000000000000000000001s", S),
        ("1.9999999999s", S + 999_999_999),
        ("2562047h", 2_562_047 * H),
    ];

    #[test]
    fn accepts_what_go_accepts_with_the_same_value() {
        for &(input, nanos) in VALID {
            assert_eq!(
                parse_duration(input),
                Ok(GoDuration::from_nanos(nanos)),
                "parse_duration({input:?})"
            );
        }
    }

    /// Inputs Go rejects, with the kind of problem we report.
    #[test]
    fn rejects_what_go_rejects() {
        use DurationError::*;
        let unexpected = |at, found| UnexpectedChar { at, found };
        let missing = |n: &str| MissingUnit {
            number: n.to_owned(),
        };
        let unknown = |u: &str| UnknownUnit { unit: u.to_owned() };
        let cases: &[(&str, DurationError)] = &[
            ("", Empty),
            ("-", SignOnly),
            ("+", SignOnly),
            ("1", missing("1")),
            ("3", missing("3")),
            ("00", missing("00")),
            ("1.5", missing("1.5")),
            ("1h5", missing("5")),
            ("1.5.s", missing("1.5")),
            ("1d", unknown("d")),
            ("5 seconds", unknown(" seconds")),
            ("1H", unknown("H")),
            ("1sec", unknown("sec")),
            ("s", unexpected(0, 's')),
            ("--5s", unexpected(1, '-')),
            ("1h-5m", unknown("h-")),
            (" 5s", unexpected(0, ' ')),
            ("\u{fffd}", unexpected(0, '\u{fffd}')),
            (".", NoDigits { at: 0 }),
            ("-.", NoDigits { at: 1 }),
            (".s", NoDigits { at: 0 }),
            ("+.s", NoDigits { at: 1 }),
            ("1s.s", NoDigits { at: 2 }),
            ("3000000h", Overflow),
            ("9223372036854775808ns", Overflow),
            ("9223372036854775810ns", Overflow),
            ("-9223372036854775809ns", Overflow),
            ("9223372036854776us", Overflow),
            ("9223372036854775.808us", Overflow),
            ("9223372036854ms775us808ns", Overflow),
            ("99999999999999999999ns", Overflow),
            ("2562048h", Overflow),
            // Go's u64 sum wraps to zero here; we report the overflow instead.
            ("9223372036854775808ns9223372036854775808ns", Overflow),
            ("-9223372036854775808ns9223372036854775808ns", Overflow),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_duration(input).as_ref(),
                Err(want),
                "parse_duration({input:?})"
            );
        }
    }

    #[test]
    fn every_error_message_shows_a_valid_example() {
        let inputs = ["", "-", "s", ".", "1", "1d", "3000000h"];
        for input in inputs {
            let message = parse_duration(input).unwrap_err().to_string();
            assert!(
                message.contains('"'),
                "no example in {message:?} for {input:?}"
            );
            assert!(message.starts_with(|c: char| c.is_lowercase() || c == '"'));
        }
        assert_eq!(
            parse_duration("1d").unwrap_err().to_string(),
            "\"d\" is not a unit; use ns, us (or µs), ms, s, m or h, as in \"36h\" for a day and a half"
        );
    }

    #[test]
    fn displays_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200 * US, "2.2ms"),
            (3_300 * MS, "3.3s"),
            (4 * M + 5 * S, "4m5s"),
            (4 * M + 5001 * MS, "4m5.001s"),
            (5 * H + 6 * M + 7001 * MS, "5h6m7.001s"),
            (8 * M + 1, "8m0.000000001s"),
            (30 * M, "30m0s"),
            (H, "1h0m0s"),
            (512 * MS, "512ms"),
            (-S, "-1s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for &(nanos, want) in cases {
            assert_eq!(GoDuration::from_nanos(nanos).to_string(), want);
            assert_eq!(
                want.parse::<GoDuration>(),
                Ok(GoDuration::from_nanos(nanos))
            );
        }
    }

    #[test]
    fn converts_to_std_only_when_not_negative() {
        assert_eq!(
            GoDuration::from_nanos(5 * S).to_std(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(GoDuration::ZERO.to_std(), Some(Duration::ZERO));
        assert_eq!(GoDuration::from_nanos(-1).to_std(), None);
        assert_eq!(
            GoDuration::MIN.unsigned_abs(),
            Duration::from_nanos(1 << 63)
        );
        assert_eq!(GoDuration::from_std(Duration::MAX), None);
        assert_eq!(
            GoDuration::from_std(Duration::from_millis(8)),
            Some(GoDuration::from_nanos(8 * MS))
        );
    }
}

//! The reply parser of the shared connections: RESP2 and RESP3 bytes to `redis::Value`.
//!
//! A multiplexed connection parses every reply of every command sent over it, hundreds of
//! thousands a second on a busy gateway. redis-rs' codec is built from `combine` parsers,
//! which are general and resumable but pay for that on every reply. This module parses the
//! types that replies are made of (simple strings, integers, bulk strings, nulls, booleans,
//! doubles, arrays, maps, sets and pushes) by hand, allocating nothing but the `Value` itself,
//! and builds exactly the value `redis::parse_redis_value` builds from the same bytes, so the
//! code above it cannot tell the two parsers apart.
//!
//! The rare types are not built here: server errors (`-` and `!`, because a
//! `redis::ServerError` can only be made inside redis-rs), verbatim strings (`=`), big numbers
//! (`(`) and attributes (`|`). For those this module only finds where the frame ends and hands
//! exactly that frame to `redis::parse_redis_value`, at any depth, so that errors and exotic
//! types stay redis-rs' own values.
//!
//! [`parse`] keeps no state between calls: it is given the unread buffer and either finds a
//! whole reply at its front or says that more bytes are needed, and the caller calls it again
//! once more have arrived. So that a large reply arriving over many reads is not built over
//! and over, an aggregate at the front of a large buffer is measured first and built only once
//! it is all there. Measuring is repeated on every call until then, but it allocates nothing
//! and steps over bulk payloads without reading them.

use redis::{ErrorKind, PushKind, RedisError, RedisResult, Value};

/// How deep replies may nest, the outermost value being at depth 1.
///
/// Every level is a recursive call, so without a bound a hostile server could overflow the
/// stack with a few bytes per level (`*1\r\n*1\r\n…`). redis-rs' parser rejects replies nested
/// deeper than 100 levels (its `MAX_RECURSE_DEPTH`), so a deeper reply is an error with it
/// anyway; the same bound keeps the two parsers' answers identical. Redis' own replies nest a
/// few levels (an `EXEC` of `XREAD`s nests about six), and 100 levels of recursion fit easily
/// in a tokio worker's 2 MiB stack (the tests reach them in debug builds).
const MAX_DEPTH: usize = 100;

/// Above this many unread bytes, an aggregate reply is measured before it is built.
///
/// Building a reply that turns out to be cut short wastes the work done on it, and the caller
/// tries again after every read: a multi-megabyte reply would be built thousands of times.
/// Below this size the waste is bounded by a few microseconds, and measuring first would be a
/// second pass over every array reply on the hot path, where buffers are small.
const MEASURE_ABOVE: usize = 4096;

/// The shortest encoding of a value (`+\r\n`, `_\r\n`): with it, a count read from the wire
/// never reserves more elements than the buffer can hold.
const MIN_VALUE_LEN: usize = 3;

/// Parses the reply at the front of `buf`.
///
/// Returns `Ok(Some((value, consumed)))` when a whole reply is there, `Ok(None)` when more bytes
/// are needed, and an error of kind [`ErrorKind::Parse`] when the bytes are not a reply
/// redis-rs accepts; the connection must then be closed, since where the next reply starts is
/// unknown.
pub(crate) fn parse(buf: &[u8]) -> RedisResult<Option<(Value, usize)>> {
    let mut reader = Reader { buf, pos: 0 };
    match reader.reply() {
        Ok(value) => Ok(Some((value, reader.pos))),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Invalid(err)) => Err(err),
    }
}

/// Why a value could not be read.
enum Stop {
    /// The value goes on past the end of the buffer.
    Incomplete,
    /// The bytes are not RESP, or not a reply redis-rs accepts.
    Invalid(RedisError),
}

type Step<T> = Result<T, Stop>;

/// A position in the unread buffer.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn reply(&mut self) -> Step<Value> {
        if self.buf.len() > MEASURE_ABOVE
            && matches!(self.buf.first(), Some(b'*' | b'~' | b'%' | b'>'))
        {
            self.skip(1)?;
            self.pos = 0;
        }
        self.value(1)
    }

    /// Reads one value, the one at `depth` (the reply itself is at depth 1).
    fn value(&mut self, depth: usize) -> Step<Value> {
        let start = self.pos;
        let tag = self.tag(depth)?;
        Ok(match tag {
            b'+' => {
                let line = self.text_line()?;
                if line == "OK" {
                    Value::Okay
                } else {
                    Value::SimpleString(line.to_owned())
                }
            }
            b':' => Value::Int(self.int()?),
            b'$' => match self.int()? {
                len if len < 0 => Value::Nil,
                len => Value::BulkString(self.payload(len)?.to_vec()),
            },
            b'*' => match self.int()? {
                len if len < 0 => Value::Nil,
                len => Value::Array(self.values(len, depth)?),
            },
            // redis-rs reads a negative set length as nil, like an array's.
            b'~' => match self.int()? {
                len if len < 0 => Value::Nil,
                len => Value::Set(self.values(len, depth)?),
            },
            b'%' => {
                let len = self.pair_count()?;
                let mut pairs = Vec::with_capacity(self.capacity(len, 2 * MIN_VALUE_LEN));
                for _ in 0..len {
                    let key = self.value(depth + 1)?;
                    pairs.push((key, self.value(depth + 1)?));
                }
                Value::Map(pairs)
            }
            b'>' => self.push(start, depth)?,
            b'_' => {
                // redis-rs accepts any text on a null's line, but only text.
                self.text_line()?;
                Value::Nil
            }
            b'#' => match self.line()? {
                b"t" => Value::Boolean(true),
                b"f" => Value::Boolean(false),
                other => {
                    return Err(invalid(format!(
                        "expected `t` or `f` after `#` at byte {start}, got `{}`",
                        shown(other)
                    )));
                }
            },
            b',' => {
                // Rust's float syntax is what redis-rs accepts: `inf`, `-inf`, `nan` and
                // exponents included, with surrounding whitespace.
                let line = self.text_line()?;
                match line.trim().parse::<f64>() {
                    Ok(double) => Value::Double(double),
                    Err(_) => {
                        return Err(invalid(format!(
                            "expected a double at byte {start}, got `{}`",
                            shown(line.as_bytes())
                        )));
                    }
                }
            }
            b'-' | b'!' | b'=' | b'(' | b'|' => {
                self.pos = start;
                self.skip(depth)?;
                return self.delegate(start);
            }
            other => return Err(unknown_type(other, start)),
        })
    }

    /// Steps over one value, the one at `depth`, checking its framing but not its contents.
    ///
    /// It finds where a frame ends exactly as redis-rs does, and enforces the same depth bound
    /// as [`Reader::value`], so that a frame it measures can be handed to redis-rs whole.
    fn skip(&mut self, depth: usize) -> Step<()> {
        let start = self.pos;
        match self.tag(depth)? {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                self.line()?;
            }
            b'$' => {
                let len = self.int()?;
                if len >= 0 {
                    self.payload(len)?;
                }
            }
            b'!' | b'=' => {
                let len = self.int()?;
                // redis-rs would wait forever for a negative length's bytes.
                if len < 0 {
                    return Err(invalid(format!(
                        "negative length {len} of the blob at byte {start}"
                    )));
                }
                self.payload(len)?;
            }
            // A negative count (nil, or an empty push) is an empty range.
            b'*' | b'~' | b'>' => {
                for _ in 0..self.int()? {
                    self.skip(depth + 1)?;
                }
            }
            b'%' => {
                for _ in 0..self.pair_count()? {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
            }
            // The attributes, then the value they annotate: redis-rs reads both as one
            // `Value::Attribute { data, attributes }`.
            b'|' => {
                for _ in 0..self.pair_count()? {
                    self.skip(depth + 1)?;
                    self.skip(depth + 1)?;
                }
                self.skip(depth + 1)?;
            }
            other => return Err(unknown_type(other, start)),
        }
        Ok(())
    }

    /// Reads a value's type byte, once the value is known to be within the depth bound.
    fn tag(&mut self, depth: usize) -> Step<u8> {
        let &tag = self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "the value at byte {} is nested deeper than {MAX_DEPTH} levels",
                self.pos
            )));
        }
        self.pos += 1;
        Ok(tag)
    }

    /// Builds the frame from `start` to the current position with redis-rs.
    fn delegate(&self, start: usize) -> Step<Value> {
        let frame = self.buf.get(start..self.pos).ok_or(Stop::Incomplete)?;
        redis::parse_redis_value(frame).map_err(Stop::Invalid)
    }

    /// Reads `len` values one level below `depth`.
    fn values(&mut self, len: i64, depth: usize) -> Step<Vec<Value>> {
        let mut values = Vec::with_capacity(self.capacity(len, MIN_VALUE_LEN));
        for _ in 0..len {
            values.push(self.value(depth + 1)?);
        }
        Ok(values)
    }

    /// Reads a push message, whose `>` is at `start`.
    fn push(&mut self, start: usize, depth: usize) -> Step<Value> {
        let len = self.int()?;
        if len <= 0 {
            return Ok(Value::Push {
                kind: PushKind::Other(String::new()),
                data: Vec::new(),
            });
        }
        // As in redis-rs, the kind must be a simple or bulk string; `+OK` is `Value::Okay` by
        // then, which redis-rs rejects too. redis-rs reads the whole push before checking its
        // kind; rejecting it first only reports the error sooner.
        let kind = match self.value(depth + 1)? {
            Value::SimpleString(kind) => kind,
            Value::BulkString(kind) => String::from_utf8(kind).map_err(|_| {
                invalid(format!("the kind of the push at byte {start} is not UTF-8"))
            })?,
            _ => {
                return Err(invalid(format!(
                    "the push at byte {start} does not start with its kind"
                )));
            }
        };
        let data = self.values(len - 1, depth)?;
        Ok(Value::Push {
            kind: push_kind(kind),
            data,
        })
    }

    /// The number of values a count from the wire may reserve room for: no more than the rest
    /// of the buffer can hold, each taking at least `min_len` bytes.
    fn capacity(&self, count: i64, min_len: usize) -> usize {
        let fit = self.buf.len().saturating_sub(self.pos) / min_len;
        usize::try_from(count).map_or(fit, |count| count.min(fit))
    }

    /// Reads a map's or attribute's pair count, which redis-rs rejects when negative.
    fn pair_count(&mut self) -> Step<i64> {
        let start = self.pos;
        let len = self.int()?;
        if len < 0 {
            return Err(invalid(format!(
                "negative pair count {len} at byte {start}"
            )));
        }
        Ok(len)
    }

    /// Reads the rest of a line and its CRLF, which redis-rs ends at the first CRLF: a lone
    /// CR or LF is part of the line.
    fn line(&mut self) -> Step<&'a [u8]> {
        let start = self.pos;
        let mut from = start;
        loop {
            let rest = self.buf.get(from..).ok_or(Stop::Incomplete)?;
            let Some(offset) = rest.iter().position(|&b| b == b'\r') else {
                return Err(Stop::Incomplete);
            };
            let cr = from + offset;
            match self.buf.get(cr + 1) {
                Some(b'\n') => {
                    self.pos = cr + 2;
                    return self.buf.get(start..cr).ok_or(Stop::Incomplete);
                }
                Some(_) => from = cr + 1,
                None => return Err(Stop::Incomplete),
            }
        }
    }

    /// Reads a line that redis-rs requires to be UTF-8.
    fn text_line(&mut self) -> Step<&'a str> {
        let start = self.pos;
        let line = self.line()?;
        std::str::from_utf8(line)
            .map_err(|_| invalid(format!("the line at byte {start} is not UTF-8")))
    }

    /// Reads an integer line, as a value or as a length or count.
    fn int(&mut self) -> Step<i64> {
        let start = self.pos;
        let line = self.line()?;
        parse_int(line).ok_or_else(|| {
            invalid(format!(
                "expected an integer at byte {start}, got `{}`",
                shown(line)
            ))
        })
    }

    /// Reads `len` bytes and the CRLF after them.
    fn payload(&mut self, len: i64) -> Step<&'a [u8]> {
        // A length beyond the address space can never be satisfied: the caller's buffer limit
        // or reply deadline ends such a connection.
        let len = usize::try_from(len).map_err(|_| Stop::Incomplete)?;
        let start = self.pos;
        let end = start.checked_add(len).ok_or(Stop::Incomplete)?;
        let data = self.buf.get(start..end).ok_or(Stop::Incomplete)?;
        match (self.buf.get(end), self.buf.get(end + 1)) {
            (Some(b'\r'), Some(b'\n')) => {
                self.pos = end + 2;
                Ok(data)
            }
            (None, _) | (Some(b'\r'), None) => Err(Stop::Incomplete),
            _ => Err(invalid(format!(
                "expected CRLF after the {len}-byte payload at byte {start}"
            ))),
        }
    }
}

/// Reads an integer as redis-rs does: `str::trim`, then `i64::from_str` (which takes a `+`).
fn parse_int(line: &[u8]) -> Option<i64> {
    let (negative, digits) = match line {
        [b'-', digits @ ..] => (true, digits),
        [b'+', digits @ ..] => (false, digits),
        digits => (false, digits),
    };
    // Up to 18 digits cannot overflow; everything else takes redis-rs' own path.
    if !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit) {
        let magnitude = digits
            .iter()
            .fold(0i64, |n, &digit| n * 10 + i64::from(digit - b'0'));
        return Some(if negative { -magnitude } else { magnitude });
    }
    std::str::from_utf8(line).ok()?.trim().parse().ok()
}

/// redis-rs' `get_push_kind`, which it does not export.
fn push_kind(kind: String) -> PushKind {
    match kind.as_str() {
        "invalidate" => PushKind::Invalidate,
        "message" => PushKind::Message,
        "pmessage" => PushKind::PMessage,
        "smessage" => PushKind::SMessage,
        "unsubscribe" => PushKind::Unsubscribe,
        "punsubscribe" => PushKind::PUnsubscribe,
        "sunsubscribe" => PushKind::SUnsubscribe,
        "subscribe" => PushKind::Subscribe,
        "psubscribe" => PushKind::PSubscribe,
        "ssubscribe" => PushKind::SSubscribe,
        _ => PushKind::Other(kind),
    }
}

#[cold]
fn invalid(detail: String) -> Stop {
    Stop::Invalid(RedisError::from((
        ErrorKind::Parse,
        "invalid RESP reply",
        detail,
    )))
}

#[cold]
fn unknown_type(tag: u8, at: usize) -> Stop {
    invalid(format!(
        "unknown type byte `{}` at byte {at}",
        [tag].escape_ascii()
    ))
}

/// Up to 32 bytes of `bytes`, escaped, for an error message: a hostile line may be long.
fn shown(bytes: &[u8]) -> String {
    match bytes.get(..32) {
        Some(head) if bytes.len() > 32 => format!("{}…", head.escape_ascii()),
        _ => bytes.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::Config as ProptestConfig;
    use redis::{ServerErrorKind, VerbatimFormat};

    /// Whether two values are equal, doubles compared bit for bit (so NaN equals NaN).
    fn same(a: &Value, b: &Value) -> bool {
        fn all_same(a: &[Value], b: &[Value]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        fn pairs_same(a: &[(Value, Value)], b: &[(Value, Value)]) -> bool {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|((ak, av), (bk, bv))| same(ak, bk) && same(av, bv))
        }
        match (a, b) {
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (Value::Array(a), Value::Array(b)) | (Value::Set(a), Value::Set(b)) => all_same(a, b),
            (Value::Map(a), Value::Map(b)) => pairs_same(a, b),
            (
                Value::Push { kind, data },
                Value::Push {
                    kind: other_kind,
                    data: other_data,
                },
            ) => kind == other_kind && all_same(data, other_data),
            (
                Value::Attribute { data, attributes },
                Value::Attribute {
                    data: other_data,
                    attributes: other_attributes,
                },
            ) => same(data, other_data) && pairs_same(attributes, other_attributes),
            _ => a == b,
        }
    }

    fn escaped(bytes: &[u8]) -> String {
        bytes.escape_ascii().to_string()
    }

    /// Parses `bytes`, one whole reply, checking on the way that every cut of it is
    /// incomplete, that bytes after it are left alone (also when the buffer is large enough to
    /// be measured first), and that redis-rs builds the same value.
    fn parse_whole(bytes: &[u8]) -> Value {
        for cut in 0..bytes.len() {
            assert!(
                matches!(parse(&bytes[..cut]), Ok(None)),
                "{:?} cut at {cut}: {:?}",
                escaped(bytes),
                parse(&bytes[..cut])
            );
        }
        let (value, consumed) = parse(bytes)
            .unwrap_or_else(|err| panic!("{:?}: {err}", escaped(bytes)))
            .unwrap_or_else(|| panic!("{:?} is incomplete", escaped(bytes)));
        assert_eq!(consumed, bytes.len(), "{:?}", escaped(bytes));
        let theirs = redis::parse_redis_value(bytes).expect("redis-rs parses the sample");
        assert!(
            same(&value, &theirs),
            "{:?}: {value:?} != {theirs:?}",
            escaped(bytes)
        );
        for tail in [&b"+OK\r\n:1"[..], &[b'?'; MEASURE_ABOVE + 1][..]] {
            let mut more = bytes.to_vec();
            more.extend_from_slice(tail);
            let (again, consumed) = parse(&more).expect("a whole reply").expect("a whole reply");
            assert_eq!(consumed, bytes.len(), "{:?}", escaped(bytes));
            assert!(same(&again, &value), "{:?}", escaped(bytes));
        }
        value
    }

    fn parse_error(bytes: &[u8]) -> RedisError {
        match parse(bytes) {
            Err(err) => err,
            other => panic!("{:?} parsed as {other:?}", escaped(bytes)),
        }
    }

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn simple(text: &str) -> Value {
        Value::SimpleString(text.to_owned())
    }

    #[test]
    fn simple_strings() {
        assert_eq!(parse_whole(b"+OK\r\n"), Value::Okay);
        assert_eq!(parse_whole(b"+PONG\r\n"), simple("PONG"));
        assert_eq!(parse_whole(b"+\r\n"), simple(""));
        assert_eq!(parse_whole(b"+OK \r\n"), simple("OK "));
        assert_eq!(parse_whole(b"+ok\r\n"), simple("ok"));
        // A lone CR or LF belongs to the line.
        assert_eq!(parse_whole(b"+a\rb\nc\r\r\n"), simple("a\rb\nc\r"));
        assert_eq!(
            parse_whole("+caf\u{e9}\r\n".as_bytes()),
            simple("caf\u{e9}")
        );
    }

    #[test]
    fn integers() {
        assert_eq!(parse_whole(b":42\r\n"), Value::Int(42));
        assert_eq!(parse_whole(b":-7\r\n"), Value::Int(-7));
        assert_eq!(parse_whole(b":0\r\n"), Value::Int(0));
        assert_eq!(parse_whole(b":-0\r\n"), Value::Int(0));
        assert_eq!(parse_whole(b":+5\r\n"), Value::Int(5));
        assert_eq!(parse_whole(b": 12\t\r\n"), Value::Int(12));
        assert_eq!(parse_whole(b":007\r\n"), Value::Int(7));
        assert_eq!(
            parse_whole(b":9223372036854775807\r\n"),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            parse_whole(b":-9223372036854775808\r\n"),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            parse_whole(b":999999999999999999\r\n"),
            Value::Int(999_999_999_999_999_999)
        );
    }

    #[test]
    fn bulk_strings_and_nil() {
        assert_eq!(parse_whole(b"$3\r\nfoo\r\n"), bulk(b"foo"));
        assert_eq!(parse_whole(b"$0\r\n\r\n"), bulk(b""));
        assert_eq!(parse_whole(b"$4\r\na\r\nb\r\n"), bulk(b"a\r\nb"));
        assert_eq!(parse_whole(b"$2\r\n\xff\x00\r\n"), bulk(b"\xff\x00"));
        assert_eq!(parse_whole(b"$-1\r\n"), Value::Nil);
        assert_eq!(parse_whole(b"$-5\r\n"), Value::Nil);
        assert_eq!(parse_whole(b"*-1\r\n"), Value::Nil);
        assert_eq!(parse_whole(b"~-1\r\n"), Value::Nil);
        assert_eq!(parse_whole(b"_\r\n"), Value::Nil);
        // redis-rs reads any text on a null's line.
        assert_eq!(parse_whole(b"_x\r\n"), Value::Nil);
    }

    #[test]
    fn booleans_and_doubles() {
        assert_eq!(parse_whole(b"#t\r\n"), Value::Boolean(true));
        assert_eq!(parse_whole(b"#f\r\n"), Value::Boolean(false));
        assert_eq!(parse_whole(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(parse_whole(b",-0.25\r\n"), Value::Double(-0.25));
        assert_eq!(parse_whole(b",10\r\n"), Value::Double(10.0));
        assert_eq!(
            parse_whole(b",2.67923E+8\r\n"),
            Value::Double(267_923_000.0)
        );
        assert_eq!(parse_whole(b",inf\r\n"), Value::Double(f64::INFINITY));
        assert_eq!(parse_whole(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
        assert_eq!(parse_whole(b", 1.5 \r\n"), Value::Double(1.5));
        for (bytes, negative) in [(&b",nan\r\n"[..], false), (&b",-nan\r\n"[..], true)] {
            match parse_whole(bytes) {
                Value::Double(nan) => {
                    assert!(nan.is_nan());
                    assert_eq!(nan.is_sign_negative(), negative);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn aggregates() {
        assert_eq!(parse_whole(b"*0\r\n"), Value::Array(vec![]));
        assert_eq!(
            parse_whole(b"*3\r\n$3\r\nfoo\r\n:1\r\n$-1\r\n"),
            Value::Array(vec![bulk(b"foo"), Value::Int(1), Value::Nil])
        );
        assert_eq!(
            parse_whole(b"*2\r\n*1\r\n+OK\r\n*0\r\n"),
            Value::Array(vec![Value::Array(vec![Value::Okay]), Value::Array(vec![])])
        );
        assert_eq!(
            parse_whole(b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n*1\r\n#f\r\n"),
            Value::Map(vec![
                (simple("first"), Value::Int(1)),
                (bulk(b"second"), Value::Array(vec![Value::Boolean(false)])),
            ])
        );
        assert_eq!(parse_whole(b"%0\r\n"), Value::Map(vec![]));
        assert_eq!(
            parse_whole(b"~3\r\n+orange\r\n:100\r\n,1.5\r\n"),
            Value::Set(vec![simple("orange"), Value::Int(100), Value::Double(1.5)])
        );
        assert_eq!(
            parse_whole(b"*2\r\n%1\r\n~1\r\n_\r\n*1\r\n:1\r\n$1\r\nx\r\n"),
            Value::Array(vec![
                Value::Map(vec![(
                    Value::Set(vec![Value::Nil]),
                    Value::Array(vec![Value::Int(1)])
                )]),
                bulk(b"x"),
            ])
        );
    }

    #[test]
    fn push_messages() {
        assert_eq!(
            parse_whole(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"),
            Value::Push {
                kind: PushKind::Message,
                data: vec![bulk(b"ch"), bulk(b"hello")],
            }
        );
        assert_eq!(
            parse_whole(b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n"),
            Value::Push {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(vec![bulk(b"k")])],
            }
        );
        assert_eq!(
            parse_whole(b">1\r\n+custom\r\n"),
            Value::Push {
                kind: PushKind::Other("custom".to_owned()),
                data: vec![],
            }
        );
        for empty in [&b">0\r\n"[..], b">-1\r\n"] {
            assert_eq!(
                parse_whole(empty),
                Value::Push {
                    kind: PushKind::Other(String::new()),
                    data: vec![],
                }
            );
        }
        // Every kind redis-rs knows, as a simple and as a bulk string.
        for kind in [
            "invalidate",
            "message",
            "pmessage",
            "smessage",
            "unsubscribe",
            "punsubscribe",
            "sunsubscribe",
            "subscribe",
            "psubscribe",
            "ssubscribe",
            "Message",
        ] {
            parse_whole(format!(">2\r\n+{kind}\r\n:1\r\n").as_bytes());
            parse_whole(format!(">2\r\n${}\r\n{kind}\r\n:1\r\n", kind.len()).as_bytes());
        }
    }

    #[test]
    fn server_errors_are_redis_rs_values() {
        match parse_whole(b"-ERR unknown command 'FOO'\r\n") {
            Value::ServerError(err) => {
                assert_eq!(err.kind(), Some(ServerErrorKind::ResponseError));
                assert_eq!(err.details(), Some("unknown command 'FOO'"));
            }
            other => panic!("{other:?}"),
        }
        match parse_whole(b"-MOVED 3999 127.0.0.1:6381\r\n") {
            Value::ServerError(err) => assert_eq!(err.kind(), Some(ServerErrorKind::Moved)),
            other => panic!("{other:?}"),
        }
        match parse_whole(b"!21\r\nSYNTAX invalid syntax\r\n") {
            Value::ServerError(err) => {
                assert_eq!(err.code(), "SYNTAX");
                assert_eq!(err.details(), Some("invalid syntax"));
            }
            other => panic!("{other:?}"),
        }
        // An EXEC reply: errors inside an array, also as the last element and nested deeper.
        let exec = parse_whole(
            b"*4\r\n+OK\r\n-LOADING server is loading\r\n*1\r\n!5\r\nOOM x\r\n-WRONGTYPE bad\r\n",
        );
        let Value::Array(items) = exec else {
            panic!("{exec:?}")
        };
        assert_eq!(items[0], Value::Okay);
        assert!(
            matches!(&items[1], Value::ServerError(err) if err.kind() == Some(ServerErrorKind::BusyLoading))
        );
        assert!(
            matches!(&items[2], Value::Array(inner) if matches!(&inner[0], Value::ServerError(err) if err.code() == "OOM"))
        );
        assert!(matches!(&items[3], Value::ServerError(err) if err.code() == "WRONGTYPE"));
        // In a map and in a push.
        parse_whole(b"%1\r\n-ERR k\r\n-ERR v\r\n");
        parse_whole(b">2\r\n+message\r\n-ERR x\r\n");
    }

    #[test]
    fn rare_types_are_redis_rs_values() {
        assert_eq!(
            parse_whole(b"=15\r\ntxt:Some string\r\n"),
            Value::VerbatimString {
                format: VerbatimFormat::Text,
                text: "Some string".to_owned(),
            }
        );
        parse_whole(b"=5\r\nmkd:\xff\r\n");
        parse_whole(b"(3492890328409238509324850943850943825024385\r\n");
        parse_whole(b"(-12\r\n");
        // The RESP3 specification's example: an attribute and the array it annotates.
        let attribute = parse_whole(
            b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n\
              *2\r\n:2039123\r\n:9543892\r\n",
        );
        assert!(
            matches!(&attribute, Value::Attribute { data, attributes }
                if **data == Value::Array(vec![Value::Int(2_039_123), Value::Int(9_543_892)])
                    && attributes.len() == 1),
            "{attribute:?}"
        );
        // Nested, around a delegated frame, and annotating an attribute.
        parse_whole(b"*3\r\n|1\r\n+a\r\n-ERR b\r\n=7\r\ntxt:abc\r\n:2\r\n(7\r\n");
        parse_whole(b"|0\r\n|1\r\n+a\r\n+b\r\n*1\r\n:1\r\n");
        parse_whole(b"%1\r\n+k\r\n|1\r\n+a\r\n+b\r\n$1\r\nv\r\n");
    }

    #[test]
    fn large_replies_are_measured_then_built() {
        let mut bytes = b"*400\r\n".to_vec();
        for i in 0..100 {
            bytes.extend_from_slice(format!("$12\r\nvalue-{i:06}\r\n:{i}\r\n").as_bytes());
            bytes.extend_from_slice(b"-ERR nested\r\n%1\r\n+k\r\n*2\r\n_\r\n#t\r\n");
        }
        assert!(bytes.len() > MEASURE_ABOVE);
        let Value::Array(items) = parse_whole(&bytes) else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 400);
    }

    #[test]
    fn depth_is_bounded_as_in_redis_rs() {
        // Each `open` nests one level; `last` takes the given number of levels (an attribute
        // and the value it annotates take two).
        let cases: [(&[u8], &[u8], usize); 7] = [
            (b"*1\r\n", b"*0\r\n", 1),
            (b"~1\r\n", b":1\r\n", 1),
            (b"%1\r\n+a\r\n", b"%0\r\n", 1),
            (b">2\r\n+message\r\n", b"-ERR deep\r\n", 1),
            (b"|1\r\n+a\r\n+b\r\n", b"$1\r\nx\r\n", 1),
            (b"*1\r\n", b"!1\r\nX\r\n", 1),
            (b"*1\r\n", b"|0\r\n:1\r\n", 2),
        ];
        let nested = |open: &[u8], levels: usize, last: &[u8], padding: usize| {
            let mut bytes = open.repeat(levels);
            bytes.extend_from_slice(last);
            let len = bytes.len();
            bytes.resize(len + padding, b'?');
            (bytes, len)
        };
        for (open, last, last_levels) in cases {
            for padding in [0, MEASURE_ABOVE + 1] {
                let (deepest, len) = nested(open, MAX_DEPTH - last_levels, last, padding);
                let (value, consumed) = parse(&deepest)
                    .expect("100 levels are accepted")
                    .expect("a whole reply");
                assert_eq!(consumed, len);
                assert!(same(
                    &value,
                    &redis::parse_redis_value(&deepest).expect("redis-rs accepts it")
                ));
                let (too_deep, _) = nested(open, MAX_DEPTH - last_levels + 1, last, padding);
                assert_eq!(parse_error(&too_deep).kind(), ErrorKind::Parse);
                assert_eq!(
                    redis::parse_redis_value(&too_deep).map_err(|err| err.kind()),
                    Err(ErrorKind::Parse)
                );
            }
        }
        // A hostile depth fails at the bound, without using the stack for the rest.
        let hostile = b"*1\r\n".repeat(1_000_000);
        assert_eq!(parse_error(&hostile).kind(), ErrorKind::Parse);
    }

    #[test]
    fn garbage_is_an_error() {
        let garbage: &[&[u8]] = &[
            b"?foo\r\n",
            b"hello\r\n",
            b"*1\r\n@\r\n",
            b"$abc\r\n",
            b"$\r\n",
            b"*x\r\n",
            b"*1x\r\n",
            b"%y\r\n",
            b":12a\r\n",
            b":\r\n",
            b": \r\n",
            b":9223372036854775808\r\n",
            b"$9999999999999999999\r\n",
            b"$3\r\nfooXY",
            b"$3\r\nfoo\rX",
            b"$3\r\nfoo\n",
            b"*2\r\n$1\r\naXX\r\n",
            b"#x\r\n",
            b"#\r\n",
            b"#tt\r\n",
            b",abc\r\n",
            b",\r\n",
            b"+\xff\xfe\r\n",
            b"_\xff\r\n",
            b"%-1\r\n",
            b"|-1\r\n",
            b">1\r\n:1\r\n",
            b">2\r\n+OK\r\n:1\r\n",
            b">1\r\n$2\r\n\xff\xff\r\n",
            b"=9\r\nno-colon!\r\n",
            b"(12a\r\n",
            b"!3\r\nERRxx",
            b"-\xff\r\n",
            b"|1\r\n+a\r\n:x\r\n+b\r\n",
        ];
        for bytes in garbage {
            let err = parse_error(bytes);
            assert_eq!(err.kind(), ErrorKind::Parse, "{:?}: {err}", escaped(bytes));
            assert!(
                redis::parse_redis_value(bytes).is_err(),
                "redis-rs accepts {:?}",
                escaped(bytes)
            );
        }
        // redis-rs would wait forever for a negative blob length's bytes; so does no one here.
        for bytes in [&b"!-1\r\n"[..], b"=-1\r\n", b"*1\r\n!-1\r\n"] {
            assert_eq!(parse_error(bytes).kind(), ErrorKind::Parse);
        }
        let message = parse_error(b"*1\r\n?\r\n").to_string();
        assert!(
            message.contains("unknown type byte `?` at byte 4"),
            "{message}"
        );
    }

    #[test]
    fn huge_lengths_wait_without_reserving() {
        for bytes in [
            &b"$999999999999999999\r\n"[..],
            b"$9223372036854775807\r\nabc",
            b"=9223372036854775807\r\ntxt:",
            b"*999999999999999999\r\n:1\r\n",
            b"~9223372036854775807\r\n",
            b"%999999999999999999\r\n+k\r\n",
            b"|999999999999999999\r\n",
            b">999999999999999999\r\n+message\r\n:1\r\n",
        ] {
            assert!(matches!(parse(bytes), Ok(None)), "{:?}", escaped(bytes));
        }
    }

    // Property tests: generated replies are built exactly as redis-rs builds them.

    /// 256 cases per property, about a second in a debug build, unless `PROPTEST_CASES` says
    /// otherwise.
    fn proptest_config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(256);
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn frame(tag: char, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(body.len() + 3);
        bytes.extend_from_slice(tag.to_string().as_bytes());
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(b"\r\n");
        bytes
    }

    fn blob(tag: char, payload: &[u8]) -> Vec<u8> {
        let mut bytes = format!("{tag}{}\r\n", payload.len()).into_bytes();
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(b"\r\n");
        bytes
    }

    fn aggregate(tag: char, count: usize, items: Vec<Vec<u8>>) -> Vec<u8> {
        let mut bytes = format!("{tag}{count}\r\n").into_bytes();
        bytes.extend(items.into_iter().flatten());
        bytes
    }

    /// Text for a line: never a CRLF, sometimes a lone CR or LF or non-ASCII text.
    fn line_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("OK".to_owned()),
            "[a-zA-Z0-9 ]{0,12}",
            "[ -~\u{e9}\u{a0}\u{20ac}\r\n]{0,12}".prop_filter("no CRLF", |s| !s.contains("\r\n")),
        ]
    }

    fn int_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-1000i64..1000).prop_map(|n| n.to_string()),
            (0i64..1000).prop_map(|n| format!("+{n}")),
            // Unicode whitespace, which redis-rs trims.
            any::<i64>().prop_map(|n| format!(" {n}\u{a0}")),
        ]
    }

    fn double_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>()
                .prop_filter("not NaN", |d| !d.is_nan())
                .prop_map(|d| d.to_string()),
            any::<f64>()
                .prop_filter("not NaN", |d| !d.is_nan())
                .prop_map(|d| format!("{d:e}")),
            proptest::sample::select(vec![
                "inf", "-inf", "+inf", "infinity", "-0", "1e10", ".5", "5.", " 1.5 ", "nan",
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn error_text() -> impl Strategy<Value = String> {
        "(ERR|MOVED|ASK|LOADING|WRONGTYPE|NOSCRIPT|EXECABORT|CLUSTERDOWN|NOPERM|TRYAGAIN|X)( [a-z0-9 :.]{0,16})?"
    }

    fn push_kind_frame() -> impl Strategy<Value = Vec<u8>> {
        let kind = proptest::sample::select(vec![
            "message",
            "pmessage",
            "smessage",
            "invalidate",
            "subscribe",
            "psubscribe",
            "ssubscribe",
            "unsubscribe",
            "punsubscribe",
            "sunsubscribe",
            "custom",
            "",
        ]);
        (kind, any::<bool>()).prop_map(|(kind, as_bulk)| {
            if as_bulk {
                blob('$', kind.as_bytes())
            } else {
                frame('+', kind.as_bytes())
            }
        })
    }

    fn scalar() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            line_text().prop_map(|s| frame('+', s.as_bytes())),
            int_text().prop_map(|s| frame(':', s.as_bytes())),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| blob('$', &b)),
            proptest::sample::select(vec![
                "$-1\r\n", "*-1\r\n", "~-1\r\n", "_\r\n", ">0\r\n", "#t\r\n", "#f\r\n", "%0\r\n",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            double_text().prop_map(|s| frame(',', s.as_bytes())),
            error_text().prop_map(|s| frame('-', s.as_bytes())),
            error_text().prop_map(|s| blob('!', s.as_bytes())),
            (
                proptest::sample::select(vec!["txt", "mkd", "xyz"]),
                proptest::collection::vec(any::<u8>(), 0..16)
            )
                .prop_map(|(format, text)| {
                    let mut payload = format!("{format}:").into_bytes();
                    payload.extend_from_slice(&text);
                    blob('=', &payload)
                }),
            "-?[0-9]{1,40}".prop_map(|s| frame('(', s.as_bytes())),
        ]
    }

    fn reply() -> impl Strategy<Value = Vec<u8>> {
        scalar().prop_recursive(4, 48, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| aggregate(
                    '*',
                    items.len(),
                    items
                )),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(|items| aggregate(
                    '~',
                    items.len(),
                    items
                )),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(|pairs| {
                    let count = pairs.len();
                    aggregate(
                        '%',
                        count,
                        pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                    )
                }),
                (
                    push_kind_frame(),
                    proptest::collection::vec(inner.clone(), 0..3)
                )
                    .prop_map(|(kind, data)| {
                        let count = data.len() + 1;
                        aggregate('>', count, std::iter::once(kind).chain(data).collect())
                    }),
                (
                    proptest::collection::vec((inner.clone(), inner.clone()), 0..2),
                    inner
                )
                    .prop_map(|(pairs, data)| {
                        let count = pairs.len();
                        let items = pairs.into_iter().flat_map(|(k, v)| [k, v]);
                        aggregate('|', count, items.chain(std::iter::once(data)).collect())
                    }),
            ]
        })
    }

    /// Changes one byte of a reply or cuts it short.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            any::<u8>(),
            proptest::sample::select(b"\r\n-+:$*%~>|_#,!=(0123456789".to_vec()),
        ];
        (
            reply(),
            any::<proptest::sample::Index>(),
            byte,
            any::<bool>(),
        )
            .prop_map(|(mut bytes, at, byte, cut)| {
                let at = at.index(bytes.len());
                if cut {
                    bytes.truncate(at);
                } else {
                    bytes[at] = byte;
                }
                bytes
            })
    }

    proptest! {
        #![proptest_config(proptest_config())]

        #[test]
        fn replies_are_built_as_redis_rs_builds_them(bytes in reply()) {
            let theirs = redis::parse_redis_value(&bytes);
            let theirs = theirs.map_err(|err| err.to_string());
            prop_assert!(theirs.is_ok(), "redis-rs: {:?} for {:?}", theirs, escaped(&bytes));
            let theirs = theirs.unwrap_or_default();
            for tail in [&b""[..], &[b'?'; MEASURE_ABOVE][..]] {
                let mut buf = bytes.clone();
                buf.extend_from_slice(tail);
                match parse(&buf) {
                    Ok(Some((ours, consumed))) => {
                        prop_assert_eq!(consumed, bytes.len());
                        prop_assert!(same(&ours, &theirs), "{:?} != {:?}", ours, theirs);
                    }
                    other => prop_assert!(false, "{:?} for {:?}", other, escaped(&bytes)),
                }
            }
            for cut in 0..bytes.len() {
                let cut_short = parse(&bytes[..cut]);
                prop_assert!(matches!(cut_short, Ok(None)), "{:?} at {}", cut_short, cut);
            }
        }

        #[test]
        fn damaged_replies_agree_with_redis_rs(bytes in mutated()) {
            let ours = parse(&bytes);
            let theirs = redis::parse_redis_value(&bytes);
            match (&ours, &theirs) {
                (Ok(Some((ours, consumed))), Ok(theirs)) => {
                    prop_assert!(same(ours, theirs), "{:?} != {:?}", ours, theirs);
                    // Exactly the reply's bytes are consumed.
                    let alone = redis::parse_redis_value(&bytes[..*consumed]);
                    prop_assert!(matches!(&alone, Ok(alone) if same(alone, theirs)));
                }
                // The reply is cut short for both. Waiting where redis-rs has already failed
                // is allowed only where contents are checked once the frame is whole: inside a
                // delegated attribute (taking any `|` byte as a sign of one) or a measured reply.
                (Ok(None), Err(err)) => prop_assert!(
                    err.kind() == ErrorKind::Io
                        || bytes.contains(&b'|')
                        || bytes.len() > MEASURE_ABOVE,
                    "ours: incomplete, redis-rs: {} for {:?}", err, escaped(&bytes)
                ),
                // Failing where redis-rs waits is allowed: a push's kind is checked before its
                // data is read, and a negative blob length is rejected at once.
                (Err(err), Err(_)) => prop_assert_eq!(err.kind(), ErrorKind::Parse),
                _ => prop_assert!(false, "ours {:?}, redis-rs {:?} for {:?}", ours, theirs, escaped(&bytes)),
            }
        }
    }
}

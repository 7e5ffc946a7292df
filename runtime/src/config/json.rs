//! The JSON of the sections we read, as a tree that remembers what serde_json's `Value` forgets:
//! where each value is in the file, how each number was written, and every key of an object
//! in order, repeats included.
//!
//! The text handed to [`parse`] has already been checked by serde_json (see
//! [`super::source`]), so this parser only builds the tree; it still refuses anything it does
//! not understand rather than guess. Two bounds keep a hostile file from costing more than a
//! few tens of megabytes or the stack: at most [`MAX_VALUES`] values in all of our sections,
//! and at most [`MAX_DEPTH`] levels of nesting.

use std::borrow::Cow;

/// The most values (objects, arrays, strings, numbers, ...) all of our sections may hold.
pub(super) const MAX_VALUES: usize = 250_000;

/// The deepest nesting of objects and arrays a section may have.
pub(super) const MAX_DEPTH: usize = 128;

/// One JSON value and the byte offset in the file where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Json<'a> {
    /// Byte offset of the value's first character in the whole file.
    pub at: usize,
    pub value: Value<'a>,
}

/// A JSON value. Numbers keep their text; objects keep every entry in file order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Bool(bool),
    /// The number as written (`10`, `1e1`, `-0`, `1e400`).
    Number(&'a str),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Vec<Entry<'a>>),
}

/// One `"key": value` of an object.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub value: Json<'a>,
}

/// Why a section could not be turned into a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// More than [`MAX_VALUES`] values in our sections together.
    TooManyValues,
    /// Nested deeper than [`MAX_DEPTH`], at this byte offset.
    TooDeep(usize),
    /// Not JSON after all, at this byte offset, and why (serde_json skips some things, such as
    /// a lone surrogate escape `"\ud800"`, that it does not check).
    Unreadable(usize, String),
}

/// Counts values across sections, so that the bound holds for all of them together.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    used: usize,
}

/// Parses `text`, a JSON value that starts at byte `offset` of the file.
pub(crate) fn parse<'a>(
    text: &'a str,
    offset: usize,
    budget: &mut Budget,
) -> Result<Json<'a>, Refused> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        offset,
        budget,
    };
    parser.skip_space();
    let value = parser.value(0)?;
    parser.skip_space();
    if parser.pos != parser.bytes.len() {
        return Err(parser.unreadable());
    }
    Ok(value)
}

struct Parser<'a, 'b> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    offset: usize,
    budget: &'b mut Budget,
}

impl<'a> Parser<'a, '_> {
    fn unreadable(&self) -> Refused {
        Refused::Unreadable(self.offset + self.pos, "unexpected text".to_owned())
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), Refused> {
        self.skip_space();
        if self.bytes.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unreadable())
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json<'a>, Refused> {
        self.skip_space();
        self.budget.used += 1;
        if self.budget.used > MAX_VALUES {
            return Err(Refused::TooManyValues);
        }
        let at = self.offset + self.pos;
        let value = match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.nest(depth)?;
                Value::Object(self.object(depth + 1)?)
            }
            Some(b'[') => {
                self.nest(depth)?;
                Value::Array(self.array(depth + 1)?)
            }
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.literal("true", Value::Bool(true))?,
            Some(b'f') => self.literal("false", Value::Bool(false))?,
            Some(b'n') => self.literal("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()),
            _ => return Err(self.unreadable()),
        };
        Ok(Json { at, value })
    }

    fn nest(&self, depth: usize) -> Result<(), Refused> {
        if depth >= MAX_DEPTH {
            return Err(Refused::TooDeep(self.offset + self.pos));
        }
        Ok(())
    }

    fn literal(&mut self, word: &str, value: Value<'a>) -> Result<Value<'a>, Refused> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.unreadable())
        }
    }

    fn number(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// A string at the current position: borrowed when it has no escapes, else unescaped by
    /// serde_json.
    fn string(&mut self) -> Result<Cow<'a, str>, Refused> {
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(_) => self.pos += 1,
                None => return Err(self.unreadable()),
            }
        }
        self.pos += 1;
        let at = self.offset + start;
        let quoted = self
            .text
            .get(start..self.pos)
            .ok_or_else(|| Refused::Unreadable(at, "a string is cut short".to_owned()))?;
        if !escaped {
            return Ok(Cow::Borrowed(&quoted[1..quoted.len() - 1]));
        }
        serde_json::from_str::<String>(quoted)
            .map(Cow::Owned)
            .map_err(|error| {
                let what = error.to_string();
                let what = what.split(" at line ").next().unwrap_or(&what).to_owned();
                Refused::Unreadable(
                    at,
                    format!("a string holds an escape that is not valid ({what})"),
                )
            })
    }

    fn array(&mut self, depth: usize) -> Result<Vec<Json<'a>>, Refused> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_space();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_space();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(self.unreadable()),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Vec<Entry<'a>>, Refused> {
        self.pos += 1;
        let mut entries = Vec::new();
        self.skip_space();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(entries);
        }
        loop {
            self.skip_space();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.unreadable());
            }
            let key = self.string()?;
            self.eat(b':')?;
            let value = self.value(depth)?;
            entries.push(Entry { key, value });
            self.skip_space();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(entries);
                }
                _ => return Err(self.unreadable()),
            }
        }
    }
}

impl Json<'_> {
    /// The value as serde_json's `Value`, for plugin configs; `None` for a number serde_json
    /// cannot hold (`1e400`), with its byte offset.
    pub(crate) fn to_serde(&self) -> Result<serde_json::Value, usize> {
        Ok(match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(text) => {
                serde_json::Value::Number(text.parse::<serde_json::Number>().map_err(|_| self.at)?)
            }
            Value::String(s) => serde_json::Value::String(s.clone().into_owned()),
            Value::Array(items) => serde_json::Value::Array(
                items.iter().map(Json::to_serde).collect::<Result<_, _>>()?,
            ),
            Value::Object(entries) => {
                let mut map = serde_json::Map::with_capacity(entries.len());
                for entry in entries {
                    map.insert(entry.key.clone().into_owned(), entry.value.to_serde()?);
                }
                serde_json::Value::Object(map)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Json<'_> {
        parse(text, 0, &mut Budget::default()).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn numbers_keep_their_text_and_keys_their_repeats() {
        let json = tree(r#" {"db": 8, "db": 1e1, "n": -0, "big": 1e400} "#);
        let Value::Object(entries) = json.value else {
            panic!("not an object");
        };
        let keys: Vec<&str> = entries.iter().map(|e| &*e.key).collect();
        assert_eq!(keys, ["db", "db", "n", "big"]);
        let numbers: Vec<&Value<'_>> = entries.iter().map(|e| &e.value.value).collect();
        assert_eq!(
            numbers,
            [
                &Value::Number("8"),
                &Value::Number("1e1"),
                &Value::Number("-0"),
                &Value::Number("1e400")
            ]
        );
        assert_eq!(json.at, 1);
        assert_eq!(entries[1].value.at, 17);
    }

    #[test]
    fn strings_are_unescaped_and_borrowed_when_they_can_be() {
        let json = tree(r#"["plain", "tab\tand \u00e9", "\"q\""]"#);
        let Value::Array(items) = json.value else {
            panic!("not an array");
        };
        assert!(matches!(
            &items[0].value,
            Value::String(Cow::Borrowed("plain"))
        ));
        assert_eq!(items[1].value, Value::String("tab\tand é".into()));
        assert_eq!(items[2].value, Value::String("\"q\"".into()));
    }

    #[test]
    fn the_offset_places_values_in_the_whole_file() {
        let json = tree("[1]");
        assert_eq!(json.at, 0);
        let json = parse("[1]", 100, &mut Budget::default()).unwrap();
        let Value::Array(items) = json.value else {
            panic!("not an array");
        };
        assert_eq!((json.at, items[0].at), (100, 101));
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            parse(&deep, 0, &mut Budget::default()),
            Err(Refused::TooDeep(MAX_DEPTH))
        );
        let deepest = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(&deepest, 0, &mut Budget::default()).is_ok());

        let mut budget = Budget::default();
        let half = format!("[{}0]", "0,".repeat(MAX_VALUES / 2));
        assert!(parse(&half, 0, &mut budget).is_ok());
        assert_eq!(parse(&half, 0, &mut budget), Err(Refused::TooManyValues));
    }

    #[test]
    fn converts_to_serde_values() {
        let json = tree(r#"{"a": [1, 2.5, "x", null, true], "b": {}}"#);
        assert_eq!(
            json.to_serde(),
            Ok(serde_json::json!({"a": [1, 2.5, "x", null, true], "b": {}}))
        );
        assert_eq!(tree(r#"{"a": 1e400}"#).to_serde(), Err(6));
    }
}

//! The config file as text: read within a size limit, checked to be JSON, and split into the
//! sections redplug reads, without building anything for the rest.
//!
//! A gateway config is mostly the gateway's own (endpoints, backends, other namespaces), and it
//! may be large. serde_json checks the whole file and skips what is not ours as it goes, so
//! memory grows with our sections only; those are then parsed into a [`json`](super::json)
//! tree that knows where every value is. The file itself may be at most [`MAX_FILE_BYTES`].

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::ConfigError;
use super::text::shown;

/// The largest config file redplug reads.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// The parts of the file redplug reads, as text still to be parsed, each with the byte offset
/// where it starts and its JSON path.
#[derive(Default)]
pub(crate) struct Sections<'a> {
    /// The whole file, for turning offsets into lines and columns.
    pub text: &'a str,
    /// `extra_config`, when present.
    pub extra_config: Option<Extra<'a>>,
    /// The gateway's own top-level keys that redplug reads ([`GATEWAY_KEYS`]), as written.
    pub gateway: Vec<(&'static str, Raw<'a>)>,
    /// Problems found at this level (duplicate keys, a top level that is not an object).
    pub problems: Vec<ConfigError>,
}

/// The gateway's top-level keys redplug reads: the endpoints to run plugins on and serve, and
/// how `redplug serve` listens. The rest of the top level is skipped unread.
pub(crate) const GATEWAY_KEYS: [&str; 8] = [
    "endpoints",
    "host",
    "port",
    "listen_ip",
    "timeout",
    "debug_endpoint",
    "read_header_timeout",
    "max_header_bytes",
];

impl<'a> Sections<'a> {
    /// The top-level `key`, if the file has it.
    pub(crate) fn gateway(&self, key: &str) -> Option<Raw<'a>> {
        self.gateway
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, raw)| *raw)
    }
}

/// What `extra_config` holds for us.
#[derive(Default)]
pub(crate) struct Extra<'a> {
    /// Its whole value, when it is not an object.
    pub not_object: Option<Raw<'a>>,
    /// `extra_config.redis`.
    pub redis: Option<Raw<'a>>,
    /// `extra_config["plugin/redplug"]`.
    pub plugins: Option<Raw<'a>>,
    /// `extra_config["telemetry/opentelemetry"]`: KrakenD's, read for its Prometheus exporter.
    pub opentelemetry: Option<Raw<'a>>,
    /// Every other key, for the did-you-mean warning about our own names.
    pub other_keys: Vec<String>,
}

/// A section's text and the byte offset where it starts in the file.
#[derive(Clone, Copy)]
pub(crate) struct Raw<'a> {
    pub text: &'a str,
    pub at: usize,
}

/// Reads the file at `path` whole, refusing anything larger than [`MAX_FILE_BYTES`] (a device
/// such as `/dev/zero` included) and anything that is not UTF-8.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| {
        whole_file(format!(
            "cannot read the config file `{}`: {e}",
            shown(&path.display().to_string())
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            whole_file(format!(
                "cannot read the config file `{}`: {e}",
                shown(&path.display().to_string())
            ))
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(whole_file(format!(
            "the config file is larger than {} MiB, the most redplug reads; a gateway config \
             that size is almost certainly not the file meant (is it a device or a log?)",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    into_text(bytes)
}

/// `bytes` as text, or an error that says where the first byte that is not UTF-8 is.
pub(crate) fn into_text(bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|error| {
        let bytes = error.as_bytes();
        let valid = error.utf8_error().valid_up_to();
        let before = String::from_utf8_lossy(&bytes[..valid]);
        let (line, column) = line_and_column(&before, before.len());
        whole_file(format!(
            "the file is not UTF-8 text: byte {valid} (line {line}, column {column}) is not \
             part of any character; JSON files must be UTF-8, so save the file as UTF-8"
        ))
    })
}

/// Checks that `text` is one JSON value and picks out our sections.
pub(crate) fn split(text: &str) -> Result<Sections<'_>, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections = Sections {
        text,
        ..Sections::default()
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    Top {
        sections: &mut sections,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end())
    .map_err(|error| syntax_error(text, &error))?;
    Ok(sections)
}

/// Line and column (both from 1, columns in characters) of byte `at` in `text`.
pub(crate) fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

fn whole_file(message: String) -> ConfigError {
    ConfigError {
        path: String::new(),
        message,
        value: None,
    }
}

/// serde_json reports `<what> at line L column C`; we keep its description, restate the
/// position in our words, and add a hint where one helps.
fn syntax_error(text: &str, error: &serde_json::Error) -> ConfigError {
    let described = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    let what = described.strip_suffix(&suffix).unwrap_or(&described);
    let at = offset_of(text, error.line(), error.column());
    let next = at
        .and_then(|at| text.get(at..))
        .and_then(|rest| rest.chars().next());
    let hint = if matches!(next, Some('/' | '#')) {
        "; JSON has no comments: remove it, or move it into a key that starts with `@`, `$`, \
         `_` or `#`, which KrakenD and redplug ignore"
    } else if what.contains("trailing comma") {
        "; JSON allows no comma after the last item: remove it"
    } else if error.is_eof() {
        "; the file ends before the JSON does: is it cut short, or is a `}` or `]` missing?"
    } else {
        ""
    };
    whole_file(format!(
        "the file is not valid JSON: {what} at line {}, column {}{hint}",
        error.line(),
        error.column()
    ))
}

/// The byte offset of serde_json's (1-based line, 1-based column in bytes) position.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    // serde_json's column counts the bytes up to and including the offending one.
    Some(start + column.saturating_sub(1))
}

/// The whole document: an object whose `extra_config` we read.
struct Top<'s, 'a> {
    sections: &'s mut Sections<'a>,
}

impl<'de, 's> DeserializeSeed<'de> for Top<'s, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, 's> Visitor<'de> for Top<'s, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let text = self.sections.text;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if let Some(known) = GATEWAY_KEYS.iter().find(|known| **known == key) {
                let raw: &'de RawValue = map.next_value()?;
                let at = offset_in(text, raw.get());
                if self.sections.gateway(known).is_some() {
                    self.sections.problems.push(duplicate(known, text, at));
                } else {
                    let raw = Raw {
                        text: raw.get(),
                        at,
                    };
                    self.sections.gateway.push((known, raw));
                }
                continue;
            }
            if key != "extra_config" {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if self.sections.extra_config.is_some() {
                let again: &'de RawValue = map.next_value()?;
                let at = offset_in(text, again.get());
                self.sections
                    .problems
                    .push(duplicate("extra_config", text, at));
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            let mut extra = Extra::default();
            if raw.get().starts_with('{') {
                // Read again, now for its keys: linear in its size, and it keeps only ours.
                let mut entries = serde_json::Deserializer::from_str(raw.get());
                ExtraSeed {
                    extra: &mut extra,
                    text,
                    problems: &mut self.sections.problems,
                }
                .deserialize(&mut entries)
                .map_err(de::Error::custom)?;
            } else {
                extra.not_object = Some(Raw {
                    text: raw.get(),
                    at: offset_in(text, raw.get()),
                });
            }
            self.sections.extra_config = Some(extra);
        }
        Ok(())
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.sections.problems.push(not_an_object("an array"));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.sections.problems.push(not_an_object("a string"));
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.sections.problems.push(not_an_object("a boolean"));
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.sections.problems.push(not_an_object("a number"));
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.sections.problems.push(not_an_object("a number"));
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.sections.problems.push(not_an_object("a number"));
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.sections.problems.push(not_an_object("null"));
        Ok(())
    }
}

fn not_an_object(kind: &str) -> ConfigError {
    whole_file(format!(
        "the file holds {kind}, but a gateway config is a JSON object such as {{\"version\": 3, \
         \"extra_config\": {{...}}}}"
    ))
}

/// `extra_config`: an object whose keys belong to every part of the gateway; we take `redis`
/// and `plugin/redplug` as raw text and skip the rest unread.
struct ExtraSeed<'s, 'a> {
    extra: &'s mut Extra<'a>,
    text: &'a str,
    problems: &'s mut Vec<ConfigError>,
}

impl<'de> DeserializeSeed<'de> for ExtraSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ExtraSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match &*key {
                "redis" => &mut self.extra.redis,
                super::PLUGIN_NAMESPACE => &mut self.extra.plugins,
                super::OPENTELEMETRY_NAMESPACE => &mut self.extra.opentelemetry,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    self.extra.other_keys.push(key.into_owned());
                    continue;
                }
            };
            let value: &'de RawValue = map.next_value()?;
            let at = offset_in(self.text, value.get());
            if slot.is_some() {
                let path = format!("extra_config{}", super::reader::key_segment(&key));
                self.problems.push(duplicate(&path, self.text, at));
                continue;
            }
            *slot = Some(Raw {
                text: value.get(),
                at,
            });
        }
        Ok(())
    }
}

/// A key that appears twice where we read it: JSON readers disagree on which one counts.
/// `second_at` is where the second one's value starts.
pub(crate) fn duplicate(path: &str, text: &str, second_at: usize) -> ConfigError {
    let (line, column) = line_and_column(text, second_at);
    ConfigError {
        path: path.to_owned(),
        message: format!(
            "appears twice in the same object (the second value is at line {line}, column \
             {column}); JSON readers disagree on which one counts, so keep only one"
        ),
        value: None,
    }
}

/// Where `part`, a slice of `text`, starts in it.
pub(crate) fn offset_in(text: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize)
}

//! Printing text that came from the config file safely.
//!
//! A name or key is echoed in errors, in `redplug check`'s report and in logs. Control
//! characters in it could rewrite the terminal of whoever reads them (`ESC[2J` clears it),
//! bidirectional overrides (U+202E) could reorder what they see, and invisible characters (a
//! zero-width space) make two different names look the same. Everything echoed goes through
//! [`shown`], which writes such characters as `\u{...}` escapes.

use std::borrow::Cow;

/// `text` with every control, bidirectional-formatting and invisible character written as a
/// `\u{...}` escape; borrowed when there is none.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c) || is_invisible(c)
}

/// Characters that change the direction text is displayed in (Unicode's `Bidi_Control`).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters that print as nothing (or as a blank that is not a space): format characters
/// and fillers that a reader cannot see.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200d}'
            | '\u{2060}'..='\u{2065}'
            | '\u{206a}'..='\u{206f}'
            | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
            | '\u{ffa0}'
            | '\u{fff0}'..='\u{fff8}'
            | '\u{e0000}'..='\u{e0fff}'
    )
}

/// The first control or bidirectional-formatting character of `text`, with its position, for
/// refusing it in a name.
pub(crate) fn first_unprintable(text: &str) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || is_bidi_control(*c))
}

/// `U+200B ZERO WIDTH SPACE`, or just the code point for characters without a common name.
pub(crate) fn describe_char(c: char) -> String {
    let name = match c {
        '\u{00ad}' => "SOFT HYPHEN",
        '\u{034f}' => "COMBINING GRAPHEME JOINER",
        '\u{061c}' => "ARABIC LETTER MARK",
        '\u{200b}' => "ZERO WIDTH SPACE",
        '\u{200c}' => "ZERO WIDTH NON-JOINER",
        '\u{200d}' => "ZERO WIDTH JOINER",
        '\u{200e}' => "LEFT-TO-RIGHT MARK",
        '\u{200f}' => "RIGHT-TO-LEFT MARK",
        '\u{202a}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202b}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202c}' => "POP DIRECTIONAL FORMATTING",
        '\u{202d}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202e}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2060}' => "WORD JOINER",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{feff}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{1b}' => "ESCAPE",
        '\t' => "TAB",
        '\n' => "LINE FEED",
        '\r' => "CARRIAGE RETURN",
        '\0' => "NULL",
        _ if c.is_control() => "a control character",
        _ => "an invisible character",
    };
    format!("U+{:04X} {name}", u32::from(c))
}

/// When `asked` and `found` differ only in invisible characters, says which one and where, so
/// that a suggestion that looks identical to what was asked for is explained.
pub(crate) fn invisible_difference(asked: &str, found: &str) -> Option<String> {
    let visible = |text: &str| -> String { text.chars().filter(|c| !is_invisible(*c)).collect() };
    if asked == found || visible(asked) != visible(found) {
        return None;
    }
    let (with, which) = if found.chars().count() >= asked.chars().count() {
        (found, "the configured name")
    } else {
        (asked, "the name asked for")
    };
    let other = if with == found { asked } else { found };
    let mut others = other.chars().peekable();
    for (index, c) in with.chars().enumerate() {
        if others.peek() == Some(&c) {
            others.next();
            continue;
        }
        if is_invisible(c) {
            let place = if index + 1 == with.chars().count() {
                "at its end".to_owned()
            } else if index == 0 {
                "at its start".to_owned()
            } else {
                format!("after its first {index} characters")
            };
            return Some(format!("{which} has {} {place}", describe_char(c)));
        }
    }
    Some("the two differ only in invisible characters".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on_or_hide() {
        assert!(matches!(shown("redis_at_eight"), Cow::Borrowed(_)));
        assert_eq!(shown("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(shown("abc\u{202e}def"), "abc\\u{202e}def");
        assert_eq!(shown("cache\u{200b}"), "cache\\u{200b}");
        assert_eq!(shown("tab\there"), "tab\\u{9}here");
        assert_eq!(shown("café ünïcode"), "café ünïcode");
    }

    #[test]
    fn finds_control_and_bidi_characters_but_not_invisible_ones() {
        assert_eq!(first_unprintable("ok"), None);
        assert_eq!(first_unprintable("a\u{1b}b"), Some((1, '\u{1b}')));
        assert_eq!(first_unprintable("\u{202e}x"), Some((0, '\u{202e}')));
        assert_eq!(first_unprintable("zw\u{200b}"), None);
    }

    #[test]
    fn explains_names_that_differ_only_in_invisible_characters() {
        assert_eq!(
            invisible_difference("redis_at_eight", "redis_at_eight\u{200b}").as_deref(),
            Some("the configured name has U+200B ZERO WIDTH SPACE at its end")
        );
        assert_eq!(
            invisible_difference("\u{feff}cache", "cache").as_deref(),
            Some("the name asked for has U+FEFF ZERO WIDTH NO-BREAK SPACE at its start")
        );
        assert_eq!(
            invisible_difference("ca\u{200d}che", "cache").as_deref(),
            Some("the name asked for has U+200D ZERO WIDTH JOINER after its first 2 characters")
        );
        assert_eq!(invisible_difference("cache", "caches"), None);
        assert_eq!(invisible_difference("cache", "cache"), None);
    }
}

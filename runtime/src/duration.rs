//! Go duration strings.

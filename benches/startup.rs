//! Startup cost of the registry walk; the measurement lands in the next commit.

fn main() {}

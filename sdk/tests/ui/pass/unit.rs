// A plugin that needs nothing.

use redplug::prelude::*;

#[derive(Plugin)]
struct AddHeader;

impl Middleware for AddHeader {}

fn main() {
    assert_eq!(<AddHeader as Plugin>::NAME, "add_header");
    assert!(<AddHeader as Plugin>::NEEDS.is_empty());
}

//! `not-a-plugin`: a test fixture that is a valid WebAssembly component (a
//! plain `wasi:cli` command) but implements neither Plugboard world, so the
//! host's tests can check that such a file is refused.

fn main() {
    println!("hi");
}

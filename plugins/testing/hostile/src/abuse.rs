//! Operations that attack the host's limits: CPU, memory, stack, output size.

use std::hint::black_box;

use serde_json::{Value, json};

/// Size of one allocation of `grow`.
const MIB: usize = 1024 * 1024;

/// Loop forever; `black_box` keeps the loop from being optimized away.
pub fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter).wrapping_add(1);
    }
}

/// Allocate and write 1 MiB chunks until an allocation fails.
pub fn grow() -> Value {
    // Plain pushes, as ordinary code allocates: when the host refuses to grow
    // memory the allocator aborts, which is what a real plugin does.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    loop {
        chunks.push(black_box(vec![0xA5; MIB]));
        if chunks.len() == usize::MAX {
            break;
        }
    }
    json!({"allocated_mib": black_box(&chunks).len()})
}

/// Recurse until a stack overflows (never returns in practice). With
/// `{"frame": "shadow"}` each call keeps a 1 KiB array on the language's own
/// stack in linear memory, which overflows first; otherwise the frames are
/// tiny and the engine's call stack overflows.
pub fn recurse(input: &Value) -> Value {
    if input.get("frame").and_then(Value::as_str) == Some("shadow") {
        return json!({"depth": deeper(0)});
    }
    let f: fn(u64) -> u64 = black_box(native_deeper);
    json!({"depth": f(0)})
}

/// Non-tail recursion with a frame the optimizer must keep.
#[inline(never)]
#[expect(unconditional_recursion, reason = "overflowing the stack is the point")]
fn deeper(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let frame = black_box(frame);
    deeper(depth + 1).wrapping_add(u64::from(frame[(depth % 7) as usize]))
}

/// Recursion through an opaque function pointer, so it can be neither
/// inlined nor turned into a loop, with no linear-memory frame.
#[inline(never)]
fn native_deeper(depth: u64) -> u64 {
    let f: fn(u64) -> u64 = black_box(native_deeper);
    f(depth + 1) ^ depth
}

/// A JSON string of `input.bytes` bytes (default 16 MiB), as output text.
pub fn huge_output(input: &Value) -> String {
    let bytes = crate::number(input, "bytes", 16 * MIB as u64) as usize;
    let mut output = String::with_capacity(bytes + 2);
    output.push('"');
    output.extend(std::iter::repeat_n('a', bytes));
    output.push('"');
    output
}

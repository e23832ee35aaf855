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

/// The marker `mark-memory` leaves behind and `scan-memory` looks for.
const MARK: &[u8; 16] = b"PLUGBOARD-MARK!!";

/// Fill `mib` MiB of freshly allocated memory, and a global, with [`MARK`],
/// then return without freeing it, as a plugin that leaves secrets behind.
pub fn mark_memory(input: &Value) -> Value {
    let bytes = crate::number(input, "mib", 4) as usize * MIB;
    let mut buf = vec![0u8; bytes];
    for chunk in buf.chunks_mut(MARK.len()) {
        chunk.copy_from_slice(&MARK[..chunk.len()]);
    }
    std::mem::forget(black_box(buf));
    json!({"marked_mib": bytes / MIB})
}

/// Grow memory by `mib` MiB, then read every byte of linear memory and count
/// [`MARK`]s: a fresh instance must find none a previous one left. With
/// `mark_first`, marks its own memory first (the scan's self-check).
#[allow(unsafe_code)]
pub fn scan_memory(input: &Value) -> Value {
    if input.get("mark_first").and_then(Value::as_bool) == Some(true) {
        // The scanner's self-check: marks made in this instance are found.
        mark_memory(input);
    }
    let grow = crate::number(input, "mib", 4) as usize * MIB;
    // Grown pages are read as they come, never written.
    let pages = grow.div_ceil(65536);
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::memory_grow(0, pages);
    #[cfg(target_arch = "wasm32")]
    let size = core::arch::wasm32::memory_size(0) * 65536;
    #[cfg(not(target_arch = "wasm32"))]
    let size = 0usize;
    let mut found = 0usize;
    let mut matched = 0usize;
    for addr in 0..size {
        // SAFETY: every address below memory.size is mapped linear memory;
        // volatile reads keep the scan from being optimised away.
        let byte = unsafe { std::ptr::read_volatile(addr as *const u8) };
        // The scanner's own copy of MARK lives in its data segment: only
        // count aligned runs, which the constant is not required to be.
        if byte == MARK[matched] {
            matched += 1;
            if matched == MARK.len() {
                found += 1;
                matched = 0;
            }
        } else {
            matched = usize::from(byte == MARK[0]);
        }
    }
    let _ = pages;
    json!({"scanned_mib": size / MIB, "marks": found})
}

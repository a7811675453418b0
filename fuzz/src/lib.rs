//! Helpers shared by the fuzz targets and the seed generator.

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;

/// Splits fuzz input into at most `max` length-prefixed frames (2-byte
/// little-endian length, then that many bytes; a short tail is taken as is)
/// and returns what is left after them.
pub fn split_frames(mut data: &[u8], max: usize) -> (Vec<&[u8]>, &[u8]) {
    let mut frames = Vec::new();
    while frames.len() < max && !data.is_empty() {
        if data.len() < 2 {
            frames.push(data);
            data = &[];
            break;
        }
        let len = u16::from_le_bytes([data[0], data[1]]) as usize;
        let rest = &data[2..];
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        frames.push(frame);
        data = tail;
    }
    (frames, data)
}

/// The inverse of [`split_frames`]: frames first, then the tail.
pub fn join_frames(frames: &[&[u8]], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let len = u16::try_from(f.len()).expect("a frame fits in 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(f);
    }
    out.extend_from_slice(tail);
    out
}

thread_local! {
    static LAST_PANIC: RefCell<Option<(String, Backtrace)>> = const { RefCell::new(None) };
}

/// libfuzzer-sys installs a panic hook that aborts on every panic, even one
/// the code under test catches on purpose (`tandem::core::decode_update` and
/// `SessionDoc::diff` wrap yrs in `catch_unwind`, as production does). This
/// hook only records the panic and its backtrace; [`run`] reports and aborts
/// when a panic escapes the target, so only those count as crashes.
pub fn record_panics() {
    std::panic::set_hook(Box::new(|info| {
        let bt = Backtrace::force_capture();
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((info.to_string(), bt)));
    }));
}

/// Runs a target body; a panic that escapes it prints where it came from and
/// aborts (libFuzzer records the input as a crash).
pub fn run(body: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(body)).is_err() {
        if let Some((msg, bt)) = LAST_PANIC.with(|p| p.borrow_mut().take()) {
            eprintln!("panic escaped the fuzz target: {msg}\n{bt}");
        }
        std::process::abort();
    }
}

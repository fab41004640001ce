//! The front's framing: a client's bytes through the capped line reader and
//! the request decoding of its reader thread; each line also as a worker's
//! answer. Must never panic, hang or hold more than the cap.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // a small cap, so the oversized path is reached too
    let (lines, long) = vane_front::transport::fuzzing::client_input(data, 4096);
    assert!(lines + long <= data.len() + 1);
    for line in data.split(|b| *b == b'\n') {
        vane_front::transport::fuzzing::worker_answer(line);
    }
});

#![no_main]

use std::sync::OnceLock;

static API: OnceLock<caretaker_collector::fuzzing::Api> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    API.get_or_init(caretaker_collector::fuzzing::Api::new)
        .request(data);
});

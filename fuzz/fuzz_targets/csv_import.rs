#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    caretaker_collector::fuzzing::csv_import(data);
});

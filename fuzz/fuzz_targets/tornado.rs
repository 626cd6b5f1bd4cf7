#![no_main]
//! Tornado signed values: anything a client sends as `PYCKET_ID`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = cloakroom_pycket::TornadoSecret::new("fuzzing secret");
    if let Some(v) = secret.verify("PYCKET_ID", data, 31, 1_800_000_000) {
        // Only a value we could have signed verifies.
        assert!(v.version == 1 || v.version == 2);
    }
});

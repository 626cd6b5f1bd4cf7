#![no_main]
//! The unpickler: anything a store could hold under a pycket session id.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = cloakroom_pycket::unpickle(data) {
        // What it read, written and read again, is the same.
        let again = cloakroom_pycket::unpickle(&cloakroom_pycket::pickle(&value))
            .expect("our own pickle reads back");
        assert_eq!(again, value);
    }
});

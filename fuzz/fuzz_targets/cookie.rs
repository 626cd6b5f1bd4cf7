//! The cookie decoder: any `Cookie` header bytes, and sign/verify/tamper.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary headers decode to nothing, and never panic.
    assert_eq!(cloakroom::internals::decode_cookie_header(data), 0);
    if data.len() >= 34 {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&data[..32]);
        let flip = usize::from(data[32]) | (usize::from(data[33]) << 8);
        cloakroom::internals::sign_and_tamper(bytes, flip);
    }
});

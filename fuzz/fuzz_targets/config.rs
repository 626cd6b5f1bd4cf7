//! The configuration parser: any text is a config or a clear error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = cloakroom_config::Config::from_toml(text)
    {
        let _ = config.key_ring();
        let _ = config.cookie_config();
        let _ = config.limits();
        let _ = config.expiry_policy().validate();
    }
});

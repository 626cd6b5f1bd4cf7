//! What the tests against the real Tornado and Python share.

use std::path::PathBuf;

/// The venv's Python: `CLOAKROOM_PYCKET_PYTHON`, or `.venv-pycket` at the
/// workspace root, where `scripts/test` installs tornado, pycket and redis.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CLOAKROOM_PYCKET_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-pycket/bin/python");
    assert!(
        p.exists(),
        "no Python with tornado and pycket at {}: run scripts/test, which installs them",
        p.display()
    );
    p
}

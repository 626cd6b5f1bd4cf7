//! Against the real thing: Tornado's own signed values and Python's own
//! pickles, made and read by the Python that `scripts/test` installs
//! (tornado, pycket and redis in `.venv-pycket`).

use cloakroom_pycket::{TornadoSecret, pickle, unpickle};
use cloakroom_testkit::tornado::python;
use serde_json::{Value, json};
use std::process::Command;

/// Runs `code` in the venv's Python and returns what it printed.
fn run(code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

const SIGNED_AT: u64 = 1_800_000_000;

#[test]
fn tornado_signed_values_both_ways() {
    let made = run(&format!(
        "from tornado.web import create_signed_value\n\
         for v in (1, 2):\n\
         \x20   print(create_signed_value('interop secret', 'PYCKET_ID', '0b9c4d0e-uuid', version=v, clock=lambda: {SIGNED_AT}).decode())"
    ));
    let secret = TornadoSecret::new("interop secret");
    let lines: Vec<&str> = made.lines().collect();
    assert_eq!(lines.len(), 2, "{made}");
    for (line, version) in lines.iter().zip([1, 2]) {
        let checked = secret
            .verify("PYCKET_ID", line.as_bytes(), 31, SIGNED_AT + 60)
            .unwrap_or_else(|| panic!("Tornado's v{version} value refused: {line}"));
        assert_eq!(checked.value, b"0b9c4d0e-uuid");
        assert_eq!((checked.version, checked.timestamp), (version, SIGNED_AT));
        // Too old, another name, another secret: refused, as Tornado does.
        assert!(
            secret
                .verify("PYCKET_ID", line.as_bytes(), 31, SIGNED_AT + 32 * 86_400)
                .is_none()
        );
        assert!(
            secret
                .verify("OTHER", line.as_bytes(), 31, SIGNED_AT + 60)
                .is_none()
        );
        assert!(
            TornadoSecret::new("not the secret")
                .verify("PYCKET_ID", line.as_bytes(), 31, SIGNED_AT + 60)
                .is_none()
        );
    }
    // Ours, read by Tornado.
    let ours = secret.sign("PYCKET_ID", b"made-in-rust", SIGNED_AT);
    let read = run(&format!(
        "from tornado.web import decode_signed_value\n\
         print(decode_signed_value('interop secret', 'PYCKET_ID', {ours:?}, clock=lambda: {}).decode())",
        SIGNED_AT + 60
    ));
    assert_eq!(read, "made-in-rust");
}

/// Plain data of every kind pycket may hold.
const SAMPLE: &str = "{'s': 'h\\u00e9llo', 'i': 3, 'neg': -70000, 'big': 2**70, 'f': 1.5, \
    't': True, 'n': None, 'l': [1, 'a'], 'tu': (1, 2), 'se': {3}, 'fs': frozenset(), \
    'b': b'\\x00\\xffab', 'ba': bytearray(b'x'), 'd': {1: 'one', None: 'none'}, \
    'nested': {'x': [{'y': []}]}, 'shared': [[7]] * 2}";

fn sample_json() -> Value {
    json!({
        "s": "héllo", "i": 3, "neg": -70000, "big": "1180591620717411303424", "f": 1.5,
        "t": true, "n": null, "l": [1, "a"], "tu": [1, 2], "se": [3], "fs": [],
        "b": {"$bytes": "AP9hYg=="}, "ba": {"$bytes": "eA=="},
        "d": {"1": "one", "null": "none"}, "nested": {"x": [{"y": []}]},
        "shared": [[7], [7]]
    })
}

#[test]
fn python_pickles_of_every_protocol() {
    let made = run(&format!(
        "import pickle\n\
         for p in range(6):\n\
         \x20   print(pickle.dumps({SAMPLE}, protocol=p).hex())"
    ));
    for (protocol, line) in made.lines().enumerate() {
        let value = unpickle(&unhex(line)).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        assert_eq!(value, sample_json(), "protocol {protocol}");
    }
    assert_eq!(made.lines().count(), 6);
}

#[test]
fn our_pickles_load_in_python() {
    let value = json!({"login": "alice", "n": 3, "big": u64::MAX, "neg": -9_000_000_000_i64,
        "f": 0.25, "ok": false, "none": null, "cart": [1, [2]], "raw": {"$bytes": "AP8="}});
    let loaded = run(&format!(
        "import pickle\n\
         v = pickle.loads(bytes.fromhex('{}'))\n\
         print(v == {{'login': 'alice', 'n': 3, 'big': 2**64 - 1, 'neg': -9000000000, \
         'f': 0.25, 'ok': False, 'none': None, 'cart': [1, [2]], 'raw': b'\\x00\\xff'}})",
        hex(&pickle(&value))
    ));
    assert_eq!(loaded, "True");
}

#[test]
fn hostile_pickles_run_nothing() {
    let dir = std::env::temp_dir().join(format!("cloakroom-pickle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = dir.join("pwned");
    // Pickles that run a shell command when Python loads them: made
    // without running it, in every protocol, plus an instance of a class.
    let made = run(&format!(
        "import pickle, os\n\
         class Evil:\n\
         \x20   def __reduce__(self):\n\
         \x20       return (os.system, ('touch {}',))\n\
         class Plain:\n\
         \x20   pass\n\
         for p in range(6):\n\
         \x20   print(pickle.dumps({{'login': 'x', 'evil': Evil()}}, protocol=p).hex())\n\
         \x20   print(pickle.dumps({{'obj': Plain()}}, protocol=p).hex())",
        target.display()
    ));
    let pickles: Vec<Vec<u8>> = made.lines().map(unhex).collect();
    assert_eq!(pickles.len(), 12);
    for (i, p) in pickles.iter().enumerate() {
        let refused = unpickle(p).expect_err("a class or a callable must be refused");
        assert!(
            refused.to_string().contains("global") || refused.to_string().contains("object"),
            "#{i}: {refused}"
        );
    }
    assert!(!target.exists(), "the unpickler ran the command");
    // The same pickle is really hostile: Python itself runs it.
    run(&format!(
        "import pickle\npickle.loads(bytes.fromhex('{}'))",
        hex(&pickles[0])
    ));
    assert!(target.exists(), "Python ran it: the pickle was hostile");
    let _ = std::fs::remove_dir_all(&dir);
}

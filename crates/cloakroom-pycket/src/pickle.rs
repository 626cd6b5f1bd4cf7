//! Pickles of plain data, both ways, without executing anything.
//!
//! [`unpickle`] reads what Python 3's `pickle.dumps` writes for plain data
//! in protocols 0 to 5: `None`, `bool`, `int`, `float`, `str`, `bytes`,
//! `bytearray`, `list`, `tuple`, `dict`, `set` and `frozenset`. It is an
//! interpreter of the pickle machine that knows no way to call anything:
//! the opcodes that would import or call (`GLOBAL`, `STACK_GLOBAL`,
//! `REDUCE`, `BUILD`, `INST`, `OBJ`, `NEWOBJ`, `NEWOBJ_EX`, persistent ids,
//! extension codes, out-of-band buffers) are refused, except for the few
//! fixed constructors Python itself uses to write plain data in the older
//! protocols (`_codecs.encode` for bytes, `set`, `frozenset`, `bytes` and
//! `bytearray`), which it evaluates itself, on data, and only with the
//! arguments Python writes.
//!
//! Values become JSON ([`serde_json::Value`]):
//!
//! | Python | JSON |
//! | --- | --- |
//! | `None`, `bool`, `str` | `null`, `true`/`false`, a string (Python 2's `str`: UTF-8 if it is, else Latin-1) |
//! | `int` | a number; outside 64 bits, its decimal digits as a string; wider than 128 bits, refused |
//! | `float` | a number; `nan`, `inf` and `-inf` as those strings |
//! | `bytes`, `bytearray` | `{"$bytes": "<standard base64>"}` |
//! | `list`, `tuple`, `set`, `frozenset` | an array (a set in its pickled order) |
//! | `dict` | an object; a key that is not a `str` becomes its JSON text (`1` → `"1"`, `None` → `"null"`, `(1, 2)` → `"[1,2]"`) |
//!
//! [`pickle`] writes JSON back as protocol 3, which every Python 3 reads:
//! objects become `dict`, arrays `list`, and `{"$bytes": …}` `bytes` again.
//! So a tuple or a set read from Python comes back a list, and a non-string
//! key comes back a string. Whatever [`unpickle`] returned reads back equal;
//! a value beyond its bounds (64 levels, 100k values, or a string over
//! 4 GiB) is written but not read back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Number, Value};
use std::fmt;

/// Most objects one pickle may build: a session is small, and a bound
/// stops a hostile pickle from making the decoder allocate without end.
const MAX_NODES: usize = 100_000;
/// Deepest nesting turned into JSON.
const MAX_DEPTH: usize = 64;
/// Most JSON values one pickle may become: the memo lets one object
/// appear many times, so a short pickle could otherwise expand without
/// end. No more than [`MAX_NODES`], so that whatever was read, written
/// back by [`pickle`] (one object per value), reads again.
const MAX_VALUES: usize = MAX_NODES;
/// Most bytes or items the plain-data constructors may copy in one
/// pickle, all calls together.
const MAX_COPIED: usize = 16 << 20;

/// Why a pickle was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError(String);

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unreadable pickle: {}", self.0)
    }
}

impl std::error::Error for PickleError {}

impl PickleError {
    /// A pickle of plain data that is not the dict pycket stores.
    #[cfg(feature = "migrate")]
    pub(crate) fn not_a_dict() -> Self {
        PickleError("a pycket session that is not a dict".into())
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError(msg.into()))
}

/// One object the pickle built.
#[derive(Debug, Clone)]
enum Node {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<usize>),
    Tuple(Vec<usize>),
    Set(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    /// One of the constructors Python uses for plain data, not yet called.
    Constructor(Constructor),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Constructor {
    /// `_codecs.encode(str, "latin1")`: bytes, in protocols 0 to 2.
    Encode,
    Set,
    FrozenSet,
    Bytes,
    ByteArray,
}

impl Constructor {
    fn named(module: &str, name: &str) -> Option<Constructor> {
        let builtins = matches!(module, "builtins" | "__builtin__");
        Some(match (module, name) {
            ("_codecs", "encode") => Constructor::Encode,
            (_, "set") if builtins => Constructor::Set,
            (_, "frozenset") if builtins => Constructor::FrozenSet,
            (_, "bytes") if builtins => Constructor::Bytes,
            (_, "bytearray") if builtins => Constructor::ByteArray,
            _ => return None,
        })
    }
}

/// What is on the pickle machine's stack.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Mark,
    Obj(usize),
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<Slot>,
    memo: std::collections::HashMap<u64, usize>,
    /// Bytes and items copied by constructors so far.
    copied: usize,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.input.len())
            .ok_or_else(|| PickleError("truncated".into()))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le(&mut self, n: usize) -> Result<u64, PickleError> {
        let bytes = self.take(n)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, PickleError> {
        let len = self.le(n)?;
        usize::try_from(len)
            .ok()
            .filter(|l| *l <= self.input.len())
            .ok_or_else(|| PickleError("a length longer than the pickle".into()))
    }

    /// A text argument, up to the newline.
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.input[self.pos..];
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| PickleError("an unterminated line".into()))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn text(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| PickleError("a str that is not UTF-8".into()))
    }

    fn push(&mut self, node: Node) -> Result<(), PickleError> {
        if self.nodes.len() >= MAX_NODES {
            return err("too many objects");
        }
        self.nodes.push(node);
        self.stack.push(Slot::Obj(self.nodes.len() - 1));
        Ok(())
    }

    fn pop(&mut self) -> Result<usize, PickleError> {
        match self.stack.pop() {
            Some(Slot::Obj(i)) => Ok(i),
            Some(Slot::Mark) => err("a mark where an object was expected"),
            None => err("an empty stack"),
        }
    }

    fn top(&self) -> Result<usize, PickleError> {
        match self.stack.last() {
            Some(Slot::Obj(i)) => Ok(*i),
            _ => err("no object on the stack"),
        }
    }

    /// The objects above the topmost mark, and the mark removed.
    fn pop_mark(&mut self) -> Result<Vec<usize>, PickleError> {
        let mark = self
            .stack
            .iter()
            .rposition(|s| matches!(s, Slot::Mark))
            .ok_or_else(|| PickleError("no mark".into()))?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        // The topmost mark is below these: they are all objects.
        Ok(items
            .into_iter()
            .filter_map(|s| match s {
                Slot::Obj(i) => Some(i),
                Slot::Mark => None,
            })
            .collect())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let top = self.top()?;
        if self.memo.len() >= MAX_NODES {
            return err("too many memo entries");
        }
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let i = *self
            .memo
            .get(&key)
            .ok_or_else(|| PickleError(format!("memo {key} is not set")))?;
        self.stack.push(Slot::Obj(i));
        Ok(())
    }

    fn decimal(line: &[u8]) -> Result<u64, PickleError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| PickleError("a bad number".into()))
    }

    fn list_mut(&mut self, i: usize) -> Result<&mut Vec<usize>, PickleError> {
        match &mut self.nodes[i] {
            Node::List(items) => Ok(items),
            _ => err("an append to something that is not a list"),
        }
    }

    fn set_items(&mut self, dict: usize, items: Vec<usize>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return err("a dict item without a value");
        }
        let Node::Dict(entries) = &mut self.nodes[dict] else {
            return err("a dict item for something that is not a dict");
        };
        for pair in items.chunks(2) {
            entries.push((pair[0], pair[1]));
        }
        Ok(())
    }

    /// Counts `n` bytes or items copied, against [`MAX_COPIED`].
    fn copy(&mut self, n: usize) -> Result<(), PickleError> {
        self.copied = self.copied.saturating_add(n);
        if self.copied > MAX_COPIED {
            return err("constructors copying too much");
        }
        Ok(())
    }

    fn reduce(&mut self) -> Result<(), PickleError> {
        let args = self.pop()?;
        let callable = self.pop()?;
        let Node::Constructor(constructor) = self.nodes[callable] else {
            return err("REDUCE of something that is not a plain-data constructor");
        };
        let Node::Tuple(args) = self.nodes[args].clone() else {
            return err("REDUCE arguments that are not a tuple");
        };
        let size = args
            .iter()
            .map(|i| match &self.nodes[*i] {
                Node::Str(s) => s.len(),
                Node::Bytes(b) => b.len(),
                Node::List(items) | Node::Tuple(items) => items.len(),
                _ => 1,
            })
            .sum();
        self.copy(size)?;
        let arg = |m: &Self, n: usize| args.get(n).map(|i| m.nodes[*i].clone());
        let node = match (constructor, args.len()) {
            (Constructor::Encode, 2) => match (arg(self, 0), arg(self, 1)) {
                (Some(Node::Str(text)), Some(Node::Str(codec)))
                    if codec == "latin1" || codec == "latin-1" =>
                {
                    let bytes = text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).ok())
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| PickleError("latin1 text out of range".into()))?;
                    Node::Bytes(bytes)
                }
                _ => return err("_codecs.encode with other arguments than Python writes"),
            },
            (Constructor::Bytes | Constructor::ByteArray, 0) => Node::Bytes(Vec::new()),
            (Constructor::Bytes | Constructor::ByteArray, 1) => match arg(self, 0) {
                Some(Node::Bytes(b)) => Node::Bytes(b),
                Some(Node::List(items)) => {
                    let bytes = items
                        .iter()
                        .map(|i| match self.nodes[*i] {
                            Node::Int(n) => u8::try_from(n).ok(),
                            _ => None,
                        })
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| PickleError("bytes from a list of non-bytes".into()))?;
                    Node::Bytes(bytes)
                }
                _ => return err("bytes or bytearray of something else"),
            },
            (Constructor::Set | Constructor::FrozenSet, 0) => Node::Set(Vec::new()),
            (Constructor::Set | Constructor::FrozenSet, 1) => match arg(self, 0) {
                Some(Node::List(items) | Node::Tuple(items)) => Node::Set(items),
                _ => return err("a set of something that is not a list"),
            },
            _ => return err("a plain-data constructor with other arguments than Python writes"),
        };
        self.push(node)
    }

    fn run(&mut self) -> Result<usize, PickleError> {
        loop {
            let op = self.byte()?;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return err(format!("protocol {proto}"));
                    }
                }
                0x95 => {
                    self.take(8)?;
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.stack
                        .pop()
                        .ok_or_else(|| PickleError("POP of nothing".into()))?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(Slot::Obj(top));
                }
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                b'I' => {
                    let line = self.line()?;
                    let node = match line {
                        b"01" => Node::Bool(true),
                        b"00" => Node::Bool(false),
                        _ => Node::Int(parse_int(line)?),
                    };
                    self.push(node)?;
                }
                b'L' => {
                    let line = self.line()?;
                    let digits = line.strip_suffix(b"L").unwrap_or(line);
                    self.push(Node::Int(parse_int(digits)?))?;
                }
                b'J' => {
                    let n = self.le(4)? as u32 as i32;
                    self.push(Node::Int(n.into()))?;
                }
                b'K' => {
                    let n = self.byte()?;
                    self.push(Node::Int(n.into()))?;
                }
                b'M' => {
                    let n = self.le(2)?;
                    self.push(Node::Int(n.into()))?;
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.byte()?)
                    } else {
                        self.len(4)?
                    };
                    let bytes = self.take(n)?;
                    self.push(Node::Int(long_from(bytes)?))?;
                }
                b'F' => {
                    let line = self.line()?;
                    let f = std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .ok_or_else(|| PickleError("a bad float".into()))?;
                    self.push(Node::Float(f))?;
                }
                b'G' => {
                    let bytes = self.take(8)?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(bytes);
                    self.push(Node::Float(f64::from_be_bytes(b)))?;
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len(4)?,
                        0x8c => usize::from(self.byte()?),
                        _ => self.len(8)?,
                    };
                    let text = self.text(n)?;
                    self.push(Node::Str(text))?;
                }
                b'V' => {
                    let line = self.line()?;
                    self.push(Node::Str(raw_unicode_escape(line)?))?;
                }
                b'S' => {
                    // Python 2's str, as protocol 0 writes it: a quoted repr.
                    let line = self.line()?;
                    self.push(Node::Str(python2_string(line)?))?;
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.len(4)?
                    } else {
                        usize::from(self.byte()?)
                    };
                    // Python 2's str: UTF-8 when it is (what a Python 2
                    // app most likely stored), else Latin-1, so no byte
                    // is lost.
                    let bytes = self.take(n)?;
                    self.push(Node::Str(py2_text(bytes)))?;
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len(4)?,
                        b'C' => usize::from(self.byte()?),
                        _ => self.len(8)?,
                    };
                    let bytes = self.take(n)?.to_vec();
                    self.push(Node::Bytes(bytes))?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.list_mut(list)?.push(item);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.list_mut(list)?.extend(items);
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return err("a tuple of missing items");
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Node::Tuple(items))?;
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Dict(Vec::new()))?;
                    let dict = self.top()?;
                    self.set_items(dict, items)?;
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, vec![key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, items)?;
                }
                0x8f => self.push(Node::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    let Node::Set(entries) = &mut self.nodes[set] else {
                        return err("ADDITEMS to something that is not a set");
                    };
                    entries.extend(items);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items))?;
                }
                b'p' => {
                    let line = self.line()?;
                    let key = Self::decimal(line)?;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let key = u64::from(self.byte()?);
                    self.memo_put(key)?;
                }
                b'r' => {
                    let key = self.le(4)?;
                    self.memo_put(key)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let key = Self::decimal(line)?;
                    self.memo_get(key)?;
                }
                b'h' => {
                    let key = u64::from(self.byte()?);
                    self.memo_get(key)?;
                }
                b'j' => {
                    let key = self.le(4)?;
                    self.memo_get(key)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let (module, name) = (
                        String::from_utf8_lossy(module).into_owned(),
                        String::from_utf8_lossy(name).into_owned(),
                    );
                    let constructor = Constructor::named(&module, &name).ok_or_else(|| {
                        PickleError(format!(
                            "the global {module}.{name} (a class or a callable)"
                        ))
                    })?;
                    self.push(Node::Constructor(constructor))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Str(module), Node::Str(name)) =
                        (&self.nodes[module], &self.nodes[name])
                    else {
                        return err("STACK_GLOBAL of something that is not a name");
                    };
                    let constructor = Constructor::named(module, name).ok_or_else(|| {
                        PickleError(format!(
                            "the global {module}.{name} (a class or a callable)"
                        ))
                    })?;
                    self.push(Node::Constructor(constructor))?;
                }
                b'R' => self.reduce()?,
                b'b' => return err("BUILD (an object's state)"),
                b'i' | b'o' => return err("INST or OBJ (an object)"),
                0x81 | 0x92 => return err("NEWOBJ (an object)"),
                b'P' | b'Q' => return err("a persistent id"),
                0x82..=0x84 => return err("an extension code"),
                0x97 | 0x98 => return err("an out-of-band buffer"),
                other => return err(format!("unknown opcode 0x{other:02x}")),
            }
        }
    }

    /// Node `i` as JSON; `made` counts the values made so far, against
    /// [`MAX_VALUES`].
    fn json(&self, i: usize, depth: usize, made: &mut usize) -> Result<Value, PickleError> {
        if depth > MAX_DEPTH {
            return err("nested too deep (or a cycle)");
        }
        *made += 1;
        if *made > MAX_VALUES {
            return err("too many values once shared objects are expanded");
        }
        let mut array = |items: &[usize]| -> Result<Value, PickleError> {
            items
                .iter()
                .map(|i| self.json(*i, depth + 1, made))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        };
        Ok(match &self.nodes[i] {
            Node::None => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(n) => match (i64::try_from(*n), u64::try_from(*n)) {
                (Ok(n), _) => Value::from(n),
                (_, Ok(n)) => Value::from(n),
                _ => Value::String(n.to_string()),
            },
            Node::Float(f) => match Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                None if f.is_nan() => Value::String("nan".into()),
                None if *f > 0.0 => Value::String("inf".into()),
                None => Value::String("-inf".into()),
            },
            Node::Str(s) => Value::String(s.clone()),
            Node::Bytes(b) => {
                let mut map = Map::new();
                map.insert("$bytes".into(), Value::String(STANDARD.encode(b)));
                Value::Object(map)
            }
            Node::List(items) | Node::Tuple(items) | Node::Set(items) => array(items)?,
            Node::Dict(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let key = match self.json(*k, depth + 1, made)? {
                        Value::String(s) if matches!(self.nodes[*k], Node::Str(_)) => s,
                        other => other.to_string(),
                    };
                    map.insert(key, self.json(*v, depth + 1, made)?);
                }
                Value::Object(map)
            }
            Node::Constructor(_) => return err("a constructor that was never called"),
        })
    }
}

fn parse_int(text: &[u8]) -> Result<i128, PickleError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| PickleError("an int out of range".into()))
}

/// A little-endian two's complement integer, up to 128 bits.
fn long_from(bytes: &[u8]) -> Result<i128, PickleError> {
    if bytes.is_empty() {
        return Ok(0);
    }
    if bytes.len() > 16 {
        return err("an int wider than 128 bits");
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = [if negative { 0xff } else { 0 }; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(i128::from_le_bytes(buf))
}

/// Protocol 0's `UNICODE` argument: raw-unicode-escape (`\uXXXX` and
/// `\UXXXXXXXX`; every other byte is a Latin-1 character).
fn raw_unicode_escape(line: &[u8]) -> Result<String, PickleError> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b == b'\\' && i + 1 < line.len() && matches!(line[i + 1], b'u' | b'U') {
            let width = if line[i + 1] == b'u' { 4 } else { 8 };
            let hex = line
                .get(i + 2..i + 2 + width)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
                .ok_or_else(|| PickleError("a bad \\u escape".into()))?;
            out.push(hex);
            i += 2 + width;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(out)
}

/// Python 2 `str` bytes as text: UTF-8 if they are, else Latin-1.
fn py2_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}

/// Protocol 0's `STRING` argument: a quoted Python 2 repr, with `\\`,
/// `\'`, `\"`, `\n`, `\r`, `\t` and `\xHH` escapes, read as Latin-1.
fn python2_string(line: &[u8]) -> Result<String, PickleError> {
    let inner = match line {
        [b'\'', inner @ .., b'\''] | [b'"', inner @ .., b'"'] => inner,
        _ => return err("an unquoted STRING"),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let b = inner[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *inner
            .get(i + 1)
            .ok_or_else(|| PickleError("a trailing backslash".into()))?;
        i += 2;
        out.push(match esc {
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'x' => {
                let hex = inner
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| PickleError("a bad \\x escape".into()))?;
                i += 2;
                hex
            }
            _ => return err("an unknown escape in a STRING"),
        });
    }
    Ok(py2_text(&out))
}

/// Reads a pickle of plain data as JSON, executing nothing. Anything else
/// (a class, an object, a callable) is an error naming what was found.
///
/// ```
/// // pickle.dumps({"login": "alice", "visits": 3}, protocol=2)
/// let pickled = b"\x80\x02}q\x00(X\x05\x00\x00\x00loginq\x01X\x05\x00\x00\x00aliceq\x02X\x06\x00\x00\x00visitsq\x03K\x03u.";
/// let value = cloakroom_pycket::unpickle(pickled).unwrap();
/// assert_eq!(value, serde_json::json!({"login": "alice", "visits": 3}));
/// // A class instance, or anything that would call code, is refused.
/// assert!(cloakroom_pycket::unpickle(b"cos\nsystem\n(S'id'\ntR.").is_err());
/// ```
pub fn unpickle(bytes: &[u8]) -> Result<Value, PickleError> {
    let mut machine = Machine {
        input: bytes,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        memo: std::collections::HashMap::new(),
        copied: 0,
    };
    let top = machine.run()?;
    machine.json(top, 0, &mut 0)
}

/// Writes JSON as a protocol 3 pickle (see the module docs for the
/// mapping back).
///
/// ```
/// let value = serde_json::json!({"login": "alice", "cart": [1, 2.5, null]});
/// let pickled = cloakroom_pycket::pickle(&value);
/// assert_eq!(cloakroom_pycket::unpickle(&pickled).unwrap(), value);
/// ```
pub fn pickle(value: &Value) -> Vec<u8> {
    let mut out = vec![0x80, 3];
    write_value(value, &mut out);
    out.push(b'.');
    out
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'X');
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'N'),
        Value::Bool(true) => out.push(0x88),
        Value::Bool(false) => out.push(0x89),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                match i32::try_from(i) {
                    Ok(small) => {
                        out.push(b'J');
                        out.extend_from_slice(&small.to_le_bytes());
                    }
                    Err(_) => {
                        out.push(0x8a);
                        out.push(8);
                        out.extend_from_slice(&i.to_le_bytes());
                    }
                }
            } else if let Some(u) = n.as_u64() {
                // Above i64::MAX: nine bytes, so the sign bit stays clear.
                out.push(0x8a);
                out.push(9);
                out.extend_from_slice(&u.to_le_bytes());
                out.push(0);
            } else {
                out.push(b'G');
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b']');
            if !items.is_empty() {
                out.push(b'(');
                for item in items {
                    write_value(item, out);
                }
                out.push(b'e');
            }
        }
        Value::Object(map) => {
            if let (1, Some(Value::String(b64))) = (map.len(), map.get("$bytes"))
                && let Ok(bytes) = STANDARD.decode(b64)
            {
                out.push(b'B');
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
                return;
            }
            out.push(b'}');
            if !map.is_empty() {
                out.push(b'(');
                for (k, v) in map {
                    write_str(k, out);
                    write_value(v, out);
                }
                out.push(b'u');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_our_own_writer() {
        let value = json!({
            "s": "héllo", "i": -5, "big": 9_000_000_000_i64, "huge": u64::MAX,
            "f": 1.5, "t": true, "n": null, "l": [1, [2, {"x": "y"}]],
            "b": {"$bytes": "AAEC"}, "empty": {}, "none": []
        });
        assert_eq!(unpickle(&pickle(&value)).unwrap(), value);
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b".",
            b"\x80\x02",
            b"X\xff\xff\xff\xff",
            b"(.",
            b"a.",
            b"h\x05.",
            b"\x80\x09N.",
            b"I12x\n.",
            b"\x8b\xff\xff\xff\x7f",
            b"]N\x90.",
            b"N}s.",
        ];
        for case in cases {
            assert!(unpickle(case).is_err(), "{case:?}");
        }
    }

    #[test]
    fn shared_objects_cannot_expand_without_end() {
        // l0 = []; l1 = [l0, l0]; l2 = [l1, l1]; ... 40 times: 2^40 leaves.
        let mut p = b"\x80\x02]q\x00".to_vec();
        for k in 0..40u8 {
            p.extend_from_slice(&[b']', b'(', b'h', k, b'h', k, b'e', b'q', k + 1]);
        }
        p.push(b'.');
        assert!(unpickle(&p).is_err());
    }

    #[test]
    fn constructors_cannot_copy_without_end() {
        // A 1 MiB bytes, then bytes(it) called 100 times: 100 MiB copied.
        let mut p = b"\x80\x03cbuiltins\nbytes\nq\x01B\x00\x00\x10\x00".to_vec();
        p.extend(std::iter::repeat_n(b'x', 1 << 20));
        p.extend_from_slice(b"\x85q\x02");
        for _ in 0..100 {
            p.extend_from_slice(b"h\x01h\x02R0");
        }
        p.extend_from_slice(b"N.");
        assert!(unpickle(&p).is_err());
    }

    #[test]
    fn python2_str_is_utf8_when_it_is() {
        // pickle.dumps({'s': 'caf\xc3\xa9', 'l': '\xe9'}, 2) under Python 2.
        let p = b"\x80\x02}q\x00(U\x01sU\x05caf\xc3\xa9U\x01lU\x01\xe9u.";
        let v = unpickle(p).unwrap();
        assert_eq!(v["s"], "café");
        assert_eq!(v["l"], "é");
    }

    #[test]
    fn what_was_read_through_shared_objects_reads_back() {
        // l = [1, 2]; pickle.dumps({'a': l, 'b': l}, 2): one list, twice.
        let shared = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00bq\x03h\x02u.";
        let value = unpickle(shared).unwrap();
        assert_eq!(value, serde_json::json!({"a": [1, 2], "b": [1, 2]}));
        assert_eq!(unpickle(&pickle(&value)).unwrap(), value);
        // The fuzzer's case: DUPs of one list that expand into more values
        // than a pickle written back could hold, so it is refused.
        let crash = include_bytes!("../tests/data/shared-objects-roundtrip.pickle");
        let e = unpickle(crash).unwrap_err();
        assert!(e.to_string().contains("too many values"), "{e}");
    }

    #[test]
    fn a_self_referencing_list_is_refused_not_followed() {
        // l = []; l.append(l); pickle.dumps(l, 2)
        let pickled = b"\x80\x02]q\x00h\x00a.";
        assert!(unpickle(pickled).is_err());
    }
}

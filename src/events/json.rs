//! One JSON producer, three outputs: the envelopes and configtxlator's JSON are written once, against [`Out`],
//! and come out as JSON text ([`TextOut`], straight into a byte buffer: what is pushed or printed), as a
//! `serde_json::Value` ([`ValueOut`]: what JMESPath filters read), or as a jq value ([`JqOut`]: what a jq filter
//! reads, without writing and parsing the text in between). Pure.
//!
//! Invariants: every output sees the same calls, so the text parses to exactly each value; the text is what
//! `serde_json::to_vec` prints for that value (compact, keys in call order, the same escaping and number forms),
//! because strings and numbers go through serde_json's own writer. Base64 and hex are written without escaping
//! (their alphabets never need it) and without an intermediate `String`. Callers keep objects and arrays balanced
//! and give each object key a value; the producers in this module tree do so by construction.

use std::fmt::{self, Display, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jaq_json::{Num, Val};
use serde_json::{Map, Value};

use super::Rendering;

/// Where JSON goes, one token at a time.
pub(crate) trait Out {
    fn begin_object(&mut self);
    /// The next member's key; its value follows.
    fn key(&mut self, key: &str);
    fn end_object(&mut self);
    fn begin_array(&mut self);
    fn end_array(&mut self);
    fn null(&mut self);
    fn bool(&mut self, value: bool);
    fn i64(&mut self, value: i64);
    fn u64(&mut self, value: u64);
    fn str(&mut self, value: &str);
    /// A string made of `value`'s `Display` text (int64 fields, timestamps, labels): no `String` on the text side.
    fn display(&mut self, value: &dyn Display);
    /// `raw` as standard base64, as a string.
    fn base64(&mut self, raw: &[u8]);
    /// `raw` as lower-case hex, as a string.
    fn hex(&mut self, raw: &[u8]);
    /// An empty singular bytes field, as the rendering prints it (`null` or `""`).
    fn empty_bytes(&mut self, rendering: Rendering);
}

/// Appends `raw` as lower-case hex digits. (A table lookup per nibble: `hex::encode` builds its string one `char`
/// at a time, about 1 % of the daemon's CPU while catching up, for block and transaction hashes.)
fn push_hex(out: &mut Vec<u8>, raw: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(raw.len() * 2);
    for byte in raw {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
}

/// JSON text appended to a byte buffer.
pub(crate) struct TextOut<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next key or array element needs a comma before it.
    comma: bool,
}

impl<'a> TextOut<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        TextOut { out, comma: false }
    }

    fn before_value(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
    }

    fn quoted(&mut self, body: impl FnOnce(&mut Vec<u8>)) {
        self.before_value();
        self.out.push(b'"');
        body(self.out);
        self.out.push(b'"');
        self.comma = true;
    }

    fn serialize(&mut self, value: &(impl serde::Serialize + ?Sized)) {
        self.before_value();
        // Writing to a Vec cannot fail, and strings and integers always serialize.
        let _ = serde_json::to_writer(&mut *self.out, value);
        self.comma = true;
    }
}

impl Out for TextOut<'_> {
    fn begin_object(&mut self) {
        self.before_value();
        self.out.push(b'{');
        self.comma = false;
    }

    fn key(&mut self, key: &str) {
        self.serialize(key);
        self.out.push(b':');
        self.comma = false;
    }

    fn end_object(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    fn begin_array(&mut self) {
        self.before_value();
        self.out.push(b'[');
        self.comma = false;
    }

    fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }

    fn null(&mut self) {
        self.before_value();
        self.out.extend_from_slice(b"null");
        self.comma = true;
    }

    fn bool(&mut self, value: bool) {
        self.before_value();
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
        self.comma = true;
    }

    fn i64(&mut self, value: i64) {
        self.serialize(&value);
    }

    fn u64(&mut self, value: u64) {
        self.serialize(&value);
    }

    fn str(&mut self, value: &str) {
        self.serialize(value);
    }

    fn display(&mut self, value: &dyn Display) {
        self.before_value();
        // Escaped as serde_json escapes, chunk by chunk as `Display` produces it.
        let mut ser = serde_json::Serializer::new(&mut *self.out);
        let _ = serde::Serializer::collect_str(&mut ser, value);
        self.comma = true;
    }

    fn base64(&mut self, raw: &[u8]) {
        self.quoted(|out| {
            let start = out.len();
            out.resize(start + base64::encoded_len(raw.len(), true).unwrap_or(0), 0);
            let written = BASE64.encode_slice(raw, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
        });
    }

    fn hex(&mut self, raw: &[u8]) {
        self.quoted(|out| push_hex(out, raw));
    }

    fn empty_bytes(&mut self, rendering: Rendering) {
        self.before_value();
        self.out
            .extend_from_slice(rendering.empty_bytes_json().as_bytes());
        self.comma = true;
    }
}

/// A JSON tree built node by node, in either of the two forms filters read.
pub(crate) trait Tree: Sized {
    /// An object's key.
    type Key;
    /// An object being filled.
    type Object: Default;
    fn key(text: &str) -> Self::Key;
    /// Adds a member, as this form's JSON parser does.
    fn insert(object: &mut Self::Object, key: Self::Key, value: Self);
    fn object(object: Self::Object) -> Self;
    fn array(items: Vec<Self>) -> Self;
    fn null() -> Self;
    fn bool(value: bool) -> Self;
    fn i64(value: i64) -> Self;
    fn u64(value: u64) -> Self;
    fn text(text: String) -> Self;
}

/// serde_json's values: what JMESPath filters and pushes read.
impl Tree for Value {
    type Key = String;
    type Object = Map<String, Value>;

    fn key(text: &str) -> String {
        text.to_owned()
    }

    fn insert(object: &mut Map<String, Value>, key: String, value: Value) {
        object.insert(key, value);
    }

    fn object(object: Map<String, Value>) -> Value {
        Value::Object(object)
    }

    fn array(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn null() -> Value {
        Value::Null
    }

    fn bool(value: bool) -> Value {
        Value::Bool(value)
    }

    fn i64(value: i64) -> Value {
        Value::from(value)
    }

    fn u64(value: u64) -> Value {
        Value::from(value)
    }

    fn text(text: String) -> Value {
        Value::String(text)
    }
}

/// jq's values, as `serde_json::from_slice::<jaq_json::Val>` makes them from the text: integers through jaq's own
/// conversion, strings as UTF-8 text, members in order.
impl Tree for Val {
    type Key = Val;
    type Object = jaq_json::Map<Val, Val>;

    fn key(text: &str) -> Val {
        Val::utf8_str(text.as_bytes().to_vec())
    }

    fn insert(object: &mut jaq_json::Map<Val, Val>, key: Val, value: Val) {
        object.insert(key, value);
    }

    fn object(object: jaq_json::Map<Val, Val>) -> Val {
        Val::obj(object)
    }

    fn array(items: Vec<Val>) -> Val {
        Val::Arr(items.into())
    }

    fn null() -> Val {
        Val::Null
    }

    fn bool(value: bool) -> Val {
        Val::Bool(value)
    }

    fn i64(value: i64) -> Val {
        Val::Num(Num::from_integral(value))
    }

    fn u64(value: u64) -> Val {
        Val::Num(Num::from_integral(value))
    }

    fn text(text: String) -> Val {
        Val::utf8_str(text.into_bytes())
    }
}

/// A [`Tree`] built node by node.
pub(crate) struct TreeOut<T: Tree> {
    /// Open objects (with the key waiting for its value) and arrays, innermost last.
    open: Vec<Open<T>>,
    /// The finished top-level value.
    root: Option<T>,
}

/// A `serde_json::Value` built node by node.
pub(crate) type ValueOut = TreeOut<Value>;
/// A jq value built node by node.
pub(crate) type JqOut = TreeOut<Val>;

enum Open<T: Tree> {
    Object(T::Object, Option<T::Key>),
    Array(Vec<T>),
}

impl<T: Tree> Default for TreeOut<T> {
    fn default() -> Self {
        TreeOut {
            open: Vec::new(),
            root: None,
        }
    }
}

impl<T: Tree> TreeOut<T> {
    /// The value written (`null` when nothing was).
    pub(crate) fn finish(self) -> T {
        self.root.unwrap_or_else(T::null)
    }

    fn put(&mut self, value: T) {
        match self.open.last_mut() {
            Some(Open::Object(map, key)) => {
                let key = key.take().unwrap_or_else(|| T::key(""));
                T::insert(map, key, value);
            }
            Some(Open::Array(items)) => items.push(value),
            None => self.root = Some(value),
        }
    }
}

impl<T: Tree> Out for TreeOut<T> {
    fn begin_object(&mut self) {
        self.open.push(Open::Object(T::Object::default(), None));
    }

    fn key(&mut self, key: &str) {
        if let Some(Open::Object(_, pending)) = self.open.last_mut() {
            *pending = Some(T::key(key));
        }
    }

    fn end_object(&mut self) {
        if let Some(Open::Object(map, _)) = self.open.pop() {
            self.put(T::object(map));
        }
    }

    fn begin_array(&mut self) {
        self.open.push(Open::Array(Vec::new()));
    }

    fn end_array(&mut self) {
        if let Some(Open::Array(items)) = self.open.pop() {
            self.put(T::array(items));
        }
    }

    fn null(&mut self) {
        self.put(T::null());
    }

    fn bool(&mut self, value: bool) {
        self.put(T::bool(value));
    }

    fn i64(&mut self, value: i64) {
        self.put(T::i64(value));
    }

    fn u64(&mut self, value: u64) {
        self.put(T::u64(value));
    }

    fn str(&mut self, value: &str) {
        self.put(T::text(value.to_owned()));
    }

    fn display(&mut self, value: &dyn Display) {
        let mut text = String::new();
        let _ = write!(text, "{value}");
        self.put(T::text(text));
    }

    fn base64(&mut self, raw: &[u8]) {
        self.put(T::text(BASE64.encode(raw)));
    }

    fn hex(&mut self, raw: &[u8]) {
        let mut text = Vec::with_capacity(raw.len() * 2);
        push_hex(&mut text, raw);
        // Only ASCII digits were pushed.
        self.put(T::text(
            String::from_utf8(text).expect("hex digits are ASCII"),
        ));
    }

    fn empty_bytes(&mut self, rendering: Rendering) {
        match rendering.empty_bytes() {
            Value::String(text) => self.put(T::text(text)),
            _ => self.null(),
        }
    }
}

/// Writes `produce`'s JSON as text, appended to `out`.
pub(crate) fn to_text(out: &mut Vec<u8>, produce: impl FnOnce(&mut TextOut<'_>)) {
    produce(&mut TextOut::new(out));
}

/// Builds `produce`'s JSON as a value.
pub(crate) fn to_value(produce: impl FnOnce(&mut ValueOut)) -> Value {
    let mut out = ValueOut::default();
    produce(&mut out);
    out.finish()
}

/// Builds `produce`'s JSON as a jq value.
pub(crate) fn to_jq(produce: impl FnOnce(&mut JqOut)) -> Val {
    let mut out = JqOut::default();
    produce(&mut out);
    out.finish()
}

/// A `Display` that writes `f`'s output: labels made of parts, without formatting them into a `String` first.
pub(crate) struct DisplayWith<F>(pub F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> Display for DisplayWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

/// An object: `obj!(o { "key" => writes_the_value, ... })`, each value an expression that writes to `o`.
macro_rules! obj {
    ($o:ident { $($key:literal => $value:expr),* $(,)? }) => {{
        $o.begin_object();
        $( $o.key($key); $value; )*
        $o.end_object();
    }};
}
pub(crate) use obj;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The text and the value `produce` writes, after checking that the jq output is what jq reads the text as.
    fn both(produce: impl Fn(&mut dyn Out)) -> (Vec<u8>, Value) {
        let mut text = Vec::new();
        produce(&mut TextOut::new(&mut text));
        let mut value = ValueOut::default();
        produce(&mut value);
        let mut jq = JqOut::default();
        produce(&mut jq);
        assert_same_jq(&jq.finish(), &text);
        (text, value.finish())
    }

    /// `built` is exactly what parsing `text` as a jq value gives: equal as jq compares, and printed alike (which
    /// tells integers from floats and text from byte strings).
    pub(crate) fn assert_same_jq(built: &Val, text: &[u8]) {
        let parsed: Val = serde_json::from_slice(text).unwrap();
        assert!(*built == parsed, "{built} != {parsed}");
        assert_eq!(built.to_string(), parsed.to_string());
    }

    #[test]
    fn text_is_what_serde_json_prints_for_the_value() {
        let (text, value) = both(|o| {
            o.begin_object();
            o.key("a \"quoted\"\n key");
            o.begin_array();
            o.null();
            o.bool(true);
            o.i64(-5);
            o.u64(u64::MAX);
            o.str("tab\there \u{1} é");
            let (msp, name) = ("Org1MSP", "ctl\u{7}");
            o.display(&DisplayWith(|f: &mut fmt::Formatter<'_>| {
                write!(f, "{msp}.{name}")
            }));
            o.base64(b"\x00\xff\x10");
            o.hex(&[0xab, 0x01]);
            o.empty_bytes(Rendering::V2_5);
            o.empty_bytes(Rendering::V3);
            o.begin_object();
            o.end_object();
            o.begin_array();
            o.end_array();
            o.end_array();
            o.key("b");
            o.base64(b"");
            o.end_object();
        });
        assert_eq!(
            String::from_utf8(text.clone()).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
        assert_eq!(serde_json::from_slice::<Value>(&text).unwrap(), value);
        let list = &value["a \"quoted\"\n key"];
        assert_eq!(list[5], "Org1MSP.ctl\u{7}");
        assert_eq!(list[6], "AP8Q");
        assert_eq!(list[7], "ab01");
        assert_eq!(list[8], Value::Null);
        assert_eq!(list[9], "");
        assert_eq!(value["b"], "");
    }
}

//! A stored value as JSON, read without its Rust type (behind [`codec::to_json`]).
//!
//! Written by hand rather than with `serde_json`: a dependency on it would put its
//! `PartialEq<Value>` impls for the integers in every user's crate graph and break type
//! inference in their code (`assert_eq!(n, iter.sum())`).
//!
//! [`codec::to_json`]: crate::codec::to_json

use std::fmt::{self, Write};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any self-describing value, as JSON text.
pub(crate) struct Json(pub String);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(Json)
    }
}

struct JsonVisitor;

/// `s` as a JSON string literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn float(f: f64) -> String {
    if f.is_nan() {
        quoted("NaN")
    } else if f.is_infinite() {
        quoted(if f > 0.0 { "inf" } else { "-inf" })
    } else {
        // `{:?}` keeps a fraction or exponent, so the number still reads as a float.
        format!("{f:?}")
    }
}

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E>(self, v: f64) -> Result<String, E> {
        Ok(float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(quoted(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<String, E> {
        let items: Vec<String> = v.iter().map(u8::to_string).collect();
        Ok(format!("[{}]", items.join(",")))
    }
    fn visit_unit<E>(self) -> Result<String, E> {
        Ok("null".into())
    }
    fn visit_none<E>(self) -> Result<String, E> {
        Ok("null".into())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let mut out = String::from("[");
        while let Some(Json(item)) = seq.next_element()? {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&item);
        }
        out.push(']');
        Ok(out)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut out = String::from("{");
        while let Some((Json(key), Json(value))) = map.next_entry()? {
            if out.len() > 1 {
                out.push(',');
            }
            // A string key as it is; any other key as its JSON text, quoted.
            if key.starts_with('"') {
                out.push_str(&key);
            } else {
                out.push_str(&quoted(&key));
            }
            out.push(':');
            out.push_str(&value);
        }
        out.push('}');
        Ok(out)
    }
}

//! Addresses in JSON: cowtrace prints them as `"0x…"` strings (a JSON number
//! cannot carry a full 64-bit value through every reader). We accept both a
//! hex string and a plain number wherever an address or pfn may appear, so a
//! harmless format change on the tracer side does not read as a failure.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};
use std::fmt;

/// Parses `0x`-prefixed hex (either case) or plain decimal.
pub fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(digits) if !digits.is_empty() => u64::from_str_radix(digits, 16).ok(),
        Some(_) => None,
        None => t.parse().ok(),
    }
}

pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{value:#x}"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    d.deserialize_any(U64Visitor)
}

/// `null` (or an absent field, with `#[serde(default)]`) is `None`.
pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "deserialize")] u64);
    Ok(Option::<Wrapped>::deserialize(d)?.map(|w| w.0))
}

struct U64Visitor;

impl Visitor<'_> for U64Visitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an unsigned integer or a \"0x…\" hex string")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("negative value {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_u64(v).ok_or_else(|| E::custom(format!("not a number: {v:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Probe {
        #[serde(with = "super")]
        a: u64,
        #[serde(default, deserialize_with = "deserialize_opt")]
        b: Option<u64>,
    }

    #[test]
    fn parses_hex_decimal_and_rejects_junk() {
        assert_eq!(parse_u64("0x7f00_0000"), None);
        assert_eq!(parse_u64("0x7F000000"), Some(0x7f00_0000));
        assert_eq!(parse_u64(" 0Xff "), Some(255));
        assert_eq!(parse_u64("4096"), Some(4096));
        assert_eq!(parse_u64("0x"), None);
        assert_eq!(parse_u64("zz"), None);
        assert_eq!(parse_u64("0xffffffffffffffff"), Some(u64::MAX));
    }

    #[test]
    fn accepts_strings_and_numbers_and_null() {
        let p: Probe = serde_json::from_str(r#"{"a":"0x10","b":17}"#).unwrap();
        assert_eq!(p, Probe { a: 16, b: Some(17) });
        let p: Probe = serde_json::from_str(r#"{"a":5,"b":null}"#).unwrap();
        assert_eq!(p, Probe { a: 5, b: None });
        let p: Probe = serde_json::from_str(r#"{"a":"0x1"}"#).unwrap();
        assert_eq!(p.b, None);
        assert!(serde_json::from_str::<Probe>(r#"{"a":"nope"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"a":-1}"#).is_err());
    }

    #[test]
    fn serializes_as_hex_string() {
        let s = serde_json::to_string(&Probe { a: 0x1000, b: None }).unwrap();
        assert_eq!(s, r#"{"a":"0x1000","b":null}"#);
    }
}

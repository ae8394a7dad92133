//! The codec's own tests: fidelity against `serde_json`, the byte fast paths, limits, and
//! property tests of the decoder against damaged input.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::net::IpAddr;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize as Derive, Serialize};
use serde_json::json;

use super::*;
use crate::fuzz::Rng;

fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out).unwrap();
    out
}

/// `value` comes back unchanged, and reads as the same `serde_json::Value` that
/// `serde_json` makes of it.
#[track_caller]
fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let bytes = encode(&value);
    let json = serde_json::to_value(&value).unwrap();
    assert_eq!(decode::<serde_json::Value>(&bytes).unwrap(), json, "{value:?}");
    comes_back(value);
}

/// `value` comes back unchanged (for values `serde_json` cannot carry).
#[track_caller]
fn comes_back<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    assert_eq!(decode::<T>(&encode(&value)).unwrap(), value);
}

#[derive(Debug, PartialEq, Serialize, Derive)]
struct Plain {
    id: u64,
    name: String,
    ratio: f64,
    tags: Vec<u32>,
}

#[derive(Debug, PartialEq, Serialize, Derive)]
#[serde(tag = "type")]
enum Internal {
    Circle { r: f64 },
    Wrapped(Plain),
    Blob { data: Vec<u8> },
    Empty,
}

#[derive(Debug, PartialEq, Serialize, Derive)]
#[serde(tag = "t", content = "c")]
enum Adjacent {
    Num(i32),
    Pair(u8, String),
    Named { x: Option<u16> },
    Nothing,
}

#[derive(Debug, PartialEq, Serialize, Derive)]
#[serde(untagged)]
enum Untagged {
    Int(u64),
    Neg(i64),
    Addr(IpAddr),
    Text(String),
    Bytes(Vec<u8>),
    Point { x: f64, y: f64 },
}

#[derive(Debug, PartialEq, Serialize, Derive)]
enum External {
    Unit,
    Newtype(u8),
    Tuple(i16, char),
    Struct { a: bool, b: Vec<External> },
}

#[derive(Debug, PartialEq, Serialize, Derive)]
struct Flattened {
    id: u32,
    #[serde(flatten)]
    inner: Sparse,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, PartialEq, Serialize, Derive)]
struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first: Option<String>,
    middle: u8,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    last: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Derive)]
struct Unit;

#[derive(Debug, PartialEq, Serialize, Derive)]
struct Newtype(String);

#[derive(Debug, PartialEq, Serialize, Derive)]
struct TupleStruct(u8, Option<bool>, ());

#[test]
fn round_trips_and_rejects_trailing_bytes() {
    let mut out = vec![9];
    encode_into(&(1u64, "two".to_string()), &mut out).unwrap();
    assert_eq!(out[0], 9, "encoding appends");
    let back: (u64, String) = decode(&out[1..]).unwrap();
    assert_eq!(back, (1, "two".to_string()));
    let mut trailing = encode(&7u8);
    trailing.push(0);
    assert_eq!(
        decode::<u8>(&trailing).unwrap_err().to_string(),
        "1 bytes left over after the value"
    );
    assert!(decode::<String>(&[STR, 5, b'a']).is_err());
}

#[test]
fn a_list_decodes_value_by_value_each_with_its_own_names() {
    #[derive(Serialize, Derive, PartialEq, Debug)]
    struct Point {
        x: u32,
        label: Option<String>,
    }
    let points = [Point { x: 1, label: None }, Point { x: 2, label: Some("b".into()) }];
    let mut list = Vec::new();
    for point in &points {
        crate::wire::put_bytes(&mut list, &encode(point));
    }
    let mut out = Vec::new();
    decode_list::<Point>(&list, &mut out).unwrap();
    assert_eq!(out, points);
    // A value with bytes left over fails; the ones before it are kept.
    let mut padded = encode(&points[0]);
    padded.push(0);
    crate::wire::put_bytes(&mut list, &padded);
    let mut out = Vec::new();
    let e = decode_list::<Point>(&list, &mut out).unwrap_err();
    assert!(e.to_string().contains("left over"), "{e}");
    assert_eq!(out, points);
}

#[test]
fn primitives_keep_their_exact_values() {
    for v in [0u64, 1, 255, 256, 65_535, 65_536, u64::from(u32::MAX), u64::MAX] {
        round_trips(v);
    }
    for v in [0i64, -1, 127, -128, 128, -129, i64::from(i32::MIN), i64::MIN, i64::MAX] {
        round_trips(v);
    }
    round_trips((u8::MAX, u16::MAX, u32::MAX, i8::MIN, i16::MIN, i32::MIN));
    comes_back((u128::MAX, i128::MIN, 0u128, -1i128));
    round_trips(('\0', 'é', '😀', char::MAX));
    round_trips((true, false, (), Unit));
    round_trips((1.5f32, -0.25f64, f64::MAX, f64::MIN_POSITIVE, 5e-324f64));
}

#[test]
fn floats_keep_their_bits_where_json_cannot() {
    let specials = [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
    let back: Vec<f64> = decode(&encode(&specials)).unwrap();
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&specials));
    let quiet_payload = f32::from_bits(0x7fc0_1234);
    let back: f32 = decode(&encode(&quiet_payload)).unwrap();
    assert_eq!(back.to_bits(), 0x7fc0_1234);
    // serde_json writes these as null and cannot read them back.
    assert!(serde_json::from_str::<f64>(&serde_json::to_string(&f64::NAN).unwrap()).is_err());
}

#[test]
fn floats_read_from_what_json_would_read_them_from() {
    // Each width is read in place; the other width and integers go the general way, as
    // serde_json reads a float from any number.
    assert_eq!(decode::<f32>(&encode(&2.5f64)).unwrap(), 2.5);
    assert_eq!(decode::<f64>(&encode(&2.5f32)).unwrap(), 2.5);
    assert_eq!(decode::<f64>(&encode(&7u8)).unwrap(), 7.0);
    assert_eq!(decode::<f32>(&encode(&-300i64)).unwrap(), -300.0);
    assert_eq!(decode::<Vec<f64>>(&encode(&json!([1, 2.5, -3]))).unwrap(), [1.0, 2.5, -3.0]);
    // A float cut short, or something else where a float goes, fails.
    for bytes in [&encode(&1.5f64)[..5], &encode(&1.5f32)[..3], &[F64][..], &[][..]] {
        assert!(decode::<f64>(bytes).is_err(), "{bytes:?}");
        assert!(decode::<f32>(bytes).is_err(), "{bytes:?}");
    }
    let text = decode::<f64>(&encode("1.5")).unwrap_err().to_string();
    assert!(text.contains("invalid type: string"), "{text}");
}

#[test]
fn bools_read_in_place_and_refuse_anything_else() {
    let bools = [true, false, false, true];
    assert_eq!(decode::<Vec<bool>>(&encode(&bools)).unwrap(), bools);
    assert_eq!(decode::<Option<bool>>(&encode(&Some(true))).unwrap(), Some(true));
    for bytes in [encode(&1u8), encode(&0u8), encode("true"), Vec::new()] {
        assert!(decode::<bool>(&bytes).is_err(), "{bytes:?}");
    }
    let text = decode::<bool>(&encode(&1u8)).unwrap_err().to_string();
    assert!(text.contains("invalid type: integer"), "{text}");
}

#[test]
fn self_describing_shapes_round_trip() {
    round_trips(json!({
        "name": "x", "n": 18_446_744_073_709_551_615u64, "neg": -3, "pi": 3.25, "ok": true,
        "none": null, "list": [1, "two", [3.5], {"k": []}], "empty": {}
    }));
    round_trips(vec![
        Internal::Circle { r: 2.0 },
        Internal::Wrapped(Plain { id: 1, name: "p".into(), ratio: 0.5, tags: vec![1, 2] }),
        Internal::Blob { data: vec![0, 1, 255] },
        Internal::Empty,
    ]);
    round_trips(vec![
        Adjacent::Num(-5),
        Adjacent::Pair(7, "s".into()),
        Adjacent::Named { x: None },
        Adjacent::Named { x: Some(9) },
        Adjacent::Nothing,
    ]);
    round_trips(vec![
        Untagged::Int(5),
        Untagged::Neg(-5),
        Untagged::Text("t".into()),
        Untagged::Bytes(vec![1, 2, 3]),
        Untagged::Point { x: 1.0, y: -1.0 },
        Untagged::Addr("127.0.0.1".parse().unwrap()),
        Untagged::Addr("::1".parse().unwrap()),
    ]);
    round_trips(vec![
        External::Unit,
        External::Newtype(3),
        External::Tuple(-2, 'x'),
        External::Struct { a: true, b: vec![External::Unit, External::Newtype(1)] },
    ]);
    round_trips(Flattened {
        id: 1,
        inner: Sparse { first: Some("f".into()), middle: 2, last: vec![] },
        rest: [("extra".to_string(), json!([1, {"a": null}]))].into(),
    });
    round_trips(vec![
        Sparse { first: None, middle: 1, last: vec![] },
        Sparse { first: Some("a".into()), middle: 2, last: vec![3] },
        Sparse { first: None, middle: 3, last: vec![4, 5] },
    ]);
    round_trips((Newtype("n".into()), TupleStruct(1, None, ()), TupleStruct(2, Some(true), ())));
}

#[test]
fn shapes_json_cannot_carry_round_trip() {
    comes_back(vec![None, Some(None), Some(Some(3u8))]);
    let tuple_keys: HashMap<(u8, bool), Vec<char>> =
        [((1, true), vec!['a']), ((2, false), vec![])].into();
    comes_back(tuple_keys);
    let struct_keys: BTreeMap<Vec<u8>, Unit> = [(vec![1], Unit), (vec![], Unit)].into();
    comes_back(struct_keys);
    comes_back(BTreeMap::from([(-1i64, 'x'), (i64::MAX, 'y')]));
}

/// A record that keeps part of itself as JSON text, unparsed.
#[derive(Debug, Serialize, Derive)]
struct Deferred {
    id: u8,
    payload: Box<serde_json::value::RawValue>,
}

#[test]
fn raw_json_text_round_trips_as_json_carries_it() {
    let text = r#"{"a": [1, 2.5, null], "b": "x"}"#;
    let raw = serde_json::value::RawValue::from_string(text.to_string()).unwrap();
    let back: Box<serde_json::value::RawValue> = decode(&encode(&raw)).unwrap();
    assert_eq!(back.get(), text);
    let deferred = Deferred { id: 7, payload: raw };
    let back: Deferred = decode(&encode(&deferred)).unwrap();
    assert_eq!((back.id, back.payload.get()), (7, text));
    let many: Vec<Deferred> = decode(&encode(&[&deferred, &deferred])).unwrap();
    assert!(many.iter().all(|d| d.payload.get() == text), "{many:?}");
}

#[test]
fn strings_owned_or_borrowed_round_trip() {
    round_trips(String::new());
    round_trips("héllo wörld 😀".to_string());
    round_trips(Cow::<'static, str>::Borrowed("borrowed"));
    round_trips(Cow::<'static, str>::Owned("owned".into()));
    round_trips(Box::<str>::from("boxed"));
    round_trips("x".repeat(1 << 20));
}

#[test]
fn byte_sequences_travel_as_one_run() {
    let bytes: Vec<u8> = (0..=255).collect();
    let encoded = encode(&bytes);
    assert_eq!(encoded[0], BYTE_RUN);
    assert_eq!(encoded.len(), 1 + 2 + 256);
    assert_eq!(encode(&bytes[..]), encoded, "a slice writes the same run");
    assert_eq!(encode(&Box::<[u8]>::from(&bytes[..])), encoded);
    round_trips(bytes.clone());
    round_trips(Box::<[u8]>::from(&bytes[..]));
    round_trips(Cow::<'static, [u8]>::Owned(bytes.clone()));
    round_trips(Vec::<u8>::new());
    round_trips(vec![vec![], vec![0u8, 255], vec![7; 1000]]);
    round_trips(vec![0u8; 4 << 20]);
    // Serialized as bytes, read as a vector, and back.
    let buf = serde_bytes::ByteBuf::from(bytes.clone());
    assert_eq!(decode::<Vec<u8>>(&encode(&buf)).unwrap(), bytes);
    assert_eq!(decode::<serde_bytes::ByteBuf>(&encoded).unwrap(), buf);
    // Other sequences of bytes are sequences.
    let deque: std::collections::VecDeque<u8> = bytes.iter().copied().collect();
    assert_eq!(encode(&deque)[0], SEQ);
    round_trips(deque);
    round_trips([1u8, 2, 3]);
}

/// Large byte strings and strings (see `bulk.rs`) come back as values made at their size,
/// whichever visitor reads them: one that takes the buffer, or one that copies what it sees.
#[test]
fn large_byte_strings_and_strings_come_back_sized_once() {
    let bytes: Vec<u8> = (0..crate::bulk::LARGE + 3).map(|i| (i % 251) as u8).collect();
    let buf = serde_bytes::ByteBuf::from(bytes.clone());
    let back = decode::<serde_bytes::ByteBuf>(&encode(&buf)).unwrap();
    assert_eq!(back, buf);
    assert_eq!(back.into_vec().capacity(), bytes.len());
    let back = decode::<Vec<u8>>(&encode(&bytes)).unwrap();
    assert_eq!((back.len(), back.capacity()), (bytes.len(), bytes.len()));
    assert_eq!(back, bytes);
    assert_eq!(decode::<Copied>(&encode(&buf)).unwrap(), Copied(bytes.clone()));
    let text = "é".repeat(crate::bulk::LARGE);
    let back = decode::<String>(&encode(&text)).unwrap();
    assert_eq!(back.capacity(), text.len());
    assert_eq!(back, text);
    round_trips(text.clone());
    assert_eq!(decode::<Box<str>>(&encode(&text)).unwrap(), text.clone().into_boxed_str());
    let mut bad = encode(&text);
    let last = bad.len() - 1;
    bad[last] = 0xff;
    assert!(decode::<String>(&bad).unwrap_err().to_string().contains("not UTF-8"));
}

/// `value`'s encoding as it crosses with its bytes apart: the reference that stays in the
/// frame, and the bytes of the bulk frame.
fn apart<T: Serialize + ?Sized>(value: &T) -> (Vec<u8>, Vec<u8>) {
    let encoded = encode(value);
    let head = byte_string_head(&encoded).expect("one byte string");
    let mut reference = Vec::new();
    bulk_reference(&mut reference, &encoded[..head]);
    (reference, encoded[head..].to_vec())
}

/// A byte string whose bytes came apart (a bulk frame) becomes the value with the very vector
/// lent, whichever of its kinds, and reads as the same value to any visitor.
#[test]
fn a_byte_string_whose_bytes_came_apart_is_the_vector_lent() {
    let bytes: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    let (reference, lent) = apart(&serde_bytes::ByteBuf::from(bytes.clone()));
    let at = lent.as_ptr();
    let back = with_bulk(Some(lent), || decode::<serde_bytes::ByteBuf>(&reference)).unwrap();
    assert_eq!((back.as_ptr(), back.as_slice()), (at, &bytes[..]), "moved, not copied");
    let (reference, lent) = apart(&bytes);
    let at = lent.as_ptr();
    let back = with_bulk(Some(lent), || decode::<Vec<u8>>(&reference)).unwrap();
    assert_eq!((back.as_ptr(), &back[..]), (at, &bytes[..]));
    let (reference, lent) = apart(&bytes);
    let back = with_bulk(Some(lent), || decode::<Reversed>(&reference)).unwrap();
    assert_eq!(back.0.first(), bytes.last());
    let (reference, lent) = apart(&serde_bytes::ByteBuf::from(bytes.clone()));
    assert_eq!(with_bulk(Some(lent), || decode::<Copied>(&reference)).unwrap(), Copied(bytes));
    let text = "é".repeat(300);
    let (reference, lent) = apart(&text);
    let back = with_bulk(Some(lent.clone()), || decode::<String>(&reference)).unwrap();
    assert_eq!(back, text);
    let json = with_bulk(Some(lent), || decode::<serde_json::Value>(&reference)).unwrap();
    assert_eq!(json, json!(text));
    let (reference, lent) = apart(&serde_bytes::ByteBuf::from(vec![7; 10]));
    let skipped = with_bulk(Some(lent), || decode::<serde::de::IgnoredAny>(&reference));
    assert!(skipped.is_ok());
}

/// Only an encoding that is one byte string and nothing more has its bytes sent apart.
#[test]
fn only_a_lone_byte_string_has_a_head_to_send_apart() {
    assert_eq!(byte_string_head(&encode(&serde_bytes::ByteBuf::from(vec![1; 300]))), Some(3));
    assert_eq!(byte_string_head(&encode("")), Some(2));
    assert_eq!(byte_string_head(&encode(&(serde_bytes::ByteBuf::from(vec![1; 300]), 1u8))), None);
    assert_eq!(byte_string_head(&encode(&5u64)), None);
    let mut longer = encode(&vec![1u8; 5]);
    longer.push(0);
    assert_eq!(byte_string_head(&longer), None, "bytes after the string");
    assert_eq!(byte_string_head(&[]), None);
    assert_eq!(byte_string_head(&[BYTES, 0x80]), None, "a length cut short");
}

/// A reference whose bytes did not come, or came at another length or for another kind, is
/// an error, not a value; a decoding inside another's keeps the outer one's bulk.
#[test]
fn a_reference_without_its_bytes_is_an_error_and_lending_nests() {
    let (reference, lent) = apart(&serde_bytes::ByteBuf::from(vec![1; 10]));
    let missing = decode::<serde_bytes::ByteBuf>(&reference).unwrap_err();
    assert!(missing.to_string().contains("did not arrive"), "{missing}");
    let short = with_bulk(Some(vec![1; 9]), || decode::<serde_bytes::ByteBuf>(&reference));
    assert!(short.unwrap_err().to_string().contains("bulk of 9 bytes"));
    let mut other_kind = reference.clone();
    other_kind[1] = SEQ;
    let refused = with_bulk(Some(vec![1; 10]), || decode::<Vec<u8>>(&other_kind));
    assert!(refused.is_err());
    let text = with_bulk(Some(vec![0xff; 10]), || {
        decode::<String>(&[BULK, STR, 10]).unwrap_err().to_string()
    });
    assert!(text.contains("not UTF-8"), "{text}");
    let (outer, inner) = with_bulk(Some(lent.clone()), || {
        let inner = with_bulk(Some(vec![2; 10]), || decode::<serde_bytes::ByteBuf>(&reference));
        (decode::<serde_bytes::ByteBuf>(&reference), inner)
    });
    assert_eq!((outer.unwrap().to_vec(), inner.unwrap().to_vec()), (lent, vec![2; 10]));
    let twice = with_bulk(Some(vec![1; 10]), || {
        let _ = decode::<serde_bytes::ByteBuf>(&reference);
        decode::<serde_bytes::ByteBuf>(&reference)
    });
    assert!(twice.is_err(), "a bulk is taken once");
}

/// An encoding that travels on whole gets back the bytes that came apart; any other is copied
/// as it is, and a reference whose bytes did not come leaves nothing.
#[test]
fn a_reference_is_made_whole_again_with_the_bytes_lent() {
    let value = serde_bytes::ByteBuf::from((0..300).map(|i| i as u8).collect::<Vec<u8>>());
    let (reference, lent) = apart(&value);
    let mut out = vec![1];
    with_bulk(Some(lent), || append_whole(&reference, &mut out)).unwrap();
    assert_eq!(out[1..], encode(&value)[..]);
    let mut out = vec![1];
    append_whole(&encode(&5u64), &mut out).unwrap();
    assert_eq!(out[1..], encode(&5u64)[..]);
    let mut out = vec![1];
    assert!(append_whole(&reference, &mut out).is_err());
    let mut longer = reference.clone();
    longer.push(0);
    assert!(with_bulk(Some(vec![0; 300]), || append_whole(&longer, &mut out)).is_err());
    assert_eq!(out, [1], "nothing appended");
}

/// A value that is one large byte string is offered apart as it is encoded, its head left in
/// the output; declined, it is encoded as usual; a small one, or one inside another value, is
/// never offered.
#[test]
fn only_a_lone_large_byte_string_is_offered_apart() {
    let large = serde_bytes::ByteBuf::from(vec![4; crate::bulk::LARGE]);
    let mut offered = Vec::new();
    let mut out = vec![9];
    let mut take = |head: &[u8], bytes: &[u8]| {
        offered.push((head.to_vec(), bytes.len()));
        true
    };
    encode_apart(&large, &mut out, &mut take).unwrap();
    let head = encode(&large)[..byte_string_head(&encode(&large)).unwrap()].to_vec();
    assert_eq!(out[1..], head[..], "the head alone, after what was there");
    assert_eq!(offered, [(head.clone(), crate::bulk::LARGE)]);
    let mut out = Vec::new();
    encode_apart(&large, &mut out, &mut |_: &[u8], _: &[u8]| false).unwrap();
    assert_eq!(out, encode(&large), "declined: encoded whole");
    let text = "x".repeat(crate::bulk::LARGE);
    let mut never = |_: &[u8], _: &[u8]| -> bool { panic!("offered") };
    for value in [
        encode_with(&serde_bytes::ByteBuf::from(vec![1; 100]), &mut never),
        encode_with(&(large.clone(), 1u8), &mut never),
        encode_with(&Some(text.clone()), &mut never),
        encode_with(&vec![large.clone()], &mut never),
    ] {
        assert!(!value.is_empty());
    }
    let mut count = 0;
    let mut out = Vec::new();
    encode_apart(&text, &mut out, &mut |_: &[u8], _: &[u8]| {
        count += 1;
        true
    })
    .unwrap();
    assert_eq!((count, out.len()), (1, byte_string_head(&encode(&text)).unwrap()));
}

fn encode_with<T: Serialize + ?Sized>(value: &T, apart: Apart<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_apart(value, &mut out, apart).unwrap();
    out
}

/// Asks for an owned byte buffer, but only reads borrowed bytes (and copies them).
#[derive(Debug, PartialEq)]
struct Copied(Vec<u8>);

impl<'de> Deserialize<'de> for Copied {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Copier;
        impl<'de> Visitor<'de> for Copier {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
        }
        d.deserialize_byte_buf(Copier).map(Copied)
    }
}

/// A `Vec<u8>` visitor that is not serde's: it must see the elements.
#[derive(Debug, PartialEq)]
struct Reversed(Vec<u8>);

impl<'de> Deserialize<'de> for Reversed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Reverser;
        impl<'de> Visitor<'de> for Reverser {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.insert(0, b);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(Reverser).map(Reversed)
    }
}

#[test]
fn only_serdes_own_vec_visitor_takes_the_shortcut() {
    assert!(vec_u8_visitor().is_some(), "the probe found serde's Vec<u8> visitor");
    assert_eq!(decode::<Reversed>(&encode(&vec![1u8, 2, 3])).unwrap(), Reversed(vec![3, 2, 1]));
    assert!(!is_vec_u8_visitor::<serde::de::IgnoredAny>());
}

/// Serializes a sequence or map with a length hint that is wrong or missing.
struct Lying {
    hint: Option<usize>,
    items: Vec<u32>,
    map: bool,
}

impl Serialize for Lying {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.map {
            let mut map = s.serialize_map(self.hint)?;
            for i in &self.items {
                map.serialize_entry(i, &i.to_string())?;
            }
            map.end()
        } else {
            let mut seq = s.serialize_seq(self.hint)?;
            for i in &self.items {
                seq.serialize_element(i)?;
            }
            seq.end()
        }
    }
}

#[test]
fn wrong_or_missing_length_hints_are_corrected() {
    for hint in [None, Some(0), Some(1), Some(5), Some(300)] {
        for len in [0, 3, 200] {
            let items: Vec<u32> = (0..len).collect();
            let seq = Lying { hint, items: items.clone(), map: false };
            assert_eq!(decode::<Vec<u32>>(&encode(&seq)).unwrap(), items);
            let map = Lying { hint, items: items.clone(), map: true };
            let back: BTreeMap<u32, String> = decode(&encode(&map)).unwrap();
            assert_eq!(back.into_keys().collect::<Vec<_>>(), items);
        }
    }
}

/// A struct with more distinct field names than one value may define.
struct ManyFields(usize);

impl Serialize for ManyFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ManyFields", self.0)?;
        for i in 0..self.0 {
            let name: &'static str = Box::leak(format!("field{i}").into_boxed_str());
            st.serialize_field(name, &i)?;
        }
        st.end()
    }
}

#[test]
fn names_are_written_once_and_past_the_table_in_full() {
    let points: Vec<Plain> =
        (0..100).map(|i| Plain { id: i, name: String::new(), ratio: 0.0, tags: vec![] }).collect();
    let once = encode(&points[..1]).len();
    assert!(encode(&points).len() < once * 60, "names are not repeated");
    let many = MAX_NAMES + 100;
    let back: BTreeMap<String, usize> = decode(&encode(&ManyFields(many))).unwrap();
    assert_eq!(back.len(), many);
    assert_eq!(back["field0"], 0);
    assert_eq!(back[&format!("field{}", many - 1)], many - 1);
}

#[derive(Debug, Clone, PartialEq, Serialize, Derive)]
struct Inner {
    a: u8,
    b: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Derive)]
struct Outer {
    first: Inner,
    second: Vec<Inner>,
    third: u8,
}

/// A struct of that many fields, named the same (at the same addresses) in every value.
struct SameFields(usize);

impl Serialize for SameFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        static NAMES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
            (0..1000).map(|i| &*Box::leak(format!("field{i}").into_boxed_str())).collect()
        });
        let mut st = s.serialize_struct("SameFields", self.0)?;
        for (i, name) in NAMES[..self.0].iter().enumerate() {
            st.serialize_field(name, &i)?;
        }
        st.end()
    }
}

/// How often `needle` occurs in `bytes`.
fn occurrences(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).filter(|w| *w == needle).count()
}

#[test]
fn names_defined_earlier_are_referred_to_whatever_came_before() {
    // Each struct's fields follow another struct's, in and out of nesting: every name is
    // defined once and referred to after that.
    let inner = |a| Inner { a, b: a + 1 };
    let outers: Vec<Outer> = (0..4)
        .map(|i| Outer { first: inner(i), second: vec![inner(i), inner(i + 1)], third: i })
        .collect();
    let bytes = encode(&outers);
    for name in ["first", "second", "third"] {
        assert_eq!(occurrences(&bytes, name.as_bytes()), 1, "{name}");
    }
    comes_back(outers);
    // Past the first 128 names, the references take two bytes.
    let many = [SameFields(200), SameFields(200)];
    let bytes = encode(&many);
    assert_eq!(occurrences(&bytes, b"field150"), 1);
    let back: Vec<BTreeMap<String, usize>> = decode(&bytes).unwrap();
    assert!(back.iter().all(|fields| fields.len() == 200 && fields["field199"] == 199));
}

/// Fails to serialize with its own message.
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

/// Fails to deserialize with its own message.
#[derive(Debug)]
struct Picky;

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        Err(serde::de::Error::custom(format!("{n} is not a picky number")))
    }
}

#[test]
fn errors_keep_the_implementations_own_text() {
    let mut out = vec![1, 2];
    let e = encode_into(&(1u8, Refuses), &mut out).unwrap_err();
    assert_eq!(e.to_string(), "this value refuses to be serialized");
    assert_eq!(out, [1, 2], "a failed encoding leaves the buffer as it was");
    let e = decode::<Picky>(&encode(&7u32)).unwrap_err();
    assert_eq!(e.to_string(), "7 is not a picky number");
    let e = decode::<Plain>(&encode(&json!({"id": 1}))).unwrap_err();
    assert_eq!(e.to_string(), "missing field `name`");
    let e = decode::<u8>(&encode(&300u16)).unwrap_err();
    assert!(e.to_string().contains("invalid value: integer `300`"), "{e}");
}

/// A list nested `depth` levels deep.
fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(json!([]), |inner, _| json!([inner]))
}

#[test]
fn nesting_is_limited_on_both_sides() {
    round_trips(nested(MAX_DEPTH as usize - 1));
    let e = encode_into(&nested(MAX_DEPTH as usize + 1), &mut Vec::new()).unwrap_err();
    assert_eq!(e.to_string(), format!("the value nests deeper than {MAX_DEPTH} levels"));
    // Bytes that claim deeper nesting than an encoder writes fail before the stack does.
    for level in [&[SEQ, 1][..], &[SOME], &[MAP, 1, STR, 0]] {
        let mut deep = level.repeat(100_000);
        deep.push(UNIT);
        let e = decode::<serde_json::Value>(&deep).unwrap_err();
        assert_eq!(e.to_string(), format!("the value nests deeper than {MAX_DEPTH} levels"));
        let e = decode::<serde::de::IgnoredAny>(&deep).unwrap_err();
        assert_eq!(e.to_string(), format!("the value nests deeper than {MAX_DEPTH} levels"));
    }
}

#[test]
fn malformed_input_is_refused_with_a_reason() {
    let cases: &[(&[u8], &str)] = &[
        (&[], "the value ends early"),
        (&[0xff], "unknown tag 0xff"),
        (&[INT + (U8 << 3) + 1, 1, 2], "bad integer tag 0x41"),
        (&[INT + (U64 << 3) + 3, 1, 2], "the value ends early"),
        (&[STR, 2, 0xc3, 0x28], "a string is not UTF-8"),
        (&[CHAR, 0, 0xd8, 0, 0], "0xd800 is not a char"),
        (&[NAME_REF, 0], "name 0 is not defined"),
        (&[BYTE_RUN, 0xff, 0xff, 0xff, 0xff, 0x0f, 1], "a length of 4294967295 is more than"),
        (&[SEQ, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02], "out of range"),
        (&[MAP, 2, UNIT, UNIT, UNIT], "a length of 2 is more than the 3 bytes left"),
    ];
    for (bytes, reason) in cases {
        let e = decode::<serde_json::Value>(bytes).unwrap_err();
        assert!(e.to_string().contains(reason), "{bytes:?}: {e}");
    }
    assert!(decode::<Vec<u8>>(&[BYTE_RUN, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]).is_err());
    let e = decode::<(u8, u8)>(&encode(&(1u8, 2u8, 3u8))).unwrap_err();
    assert!(e.to_string().contains("1 of 3 elements were not read"), "{e}");
}

/// Deserializes anything, checking that no sequence or map claims more items than the
/// bytes left could hold (what a visitor preallocates for).
struct HintChecked(usize);

impl<'de> serde::de::DeserializeSeed<'de> for HintChecked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for HintChecked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("anything")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i128<E>(self, _: i128) -> Result<(), E> {
        Ok(())
    }
    fn visit_u128<E>(self, _: u128) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        assert!(seq.size_hint().unwrap_or(0) <= self.0, "{:?} > {}", seq.size_hint(), self.0);
        while seq.next_element_seed(HintChecked(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        assert!(map.size_hint().unwrap_or(0) <= self.0, "{:?} > {}", map.size_hint(), self.0);
        while map.next_key_seed(HintChecked(self.0))?.is_some() {
            map.next_value_seed(HintChecked(self.0))?;
        }
        Ok(())
    }
}

/// Property tests: random values round-trip; damaged or random bytes never panic the decoder,
/// whatever type it reads them as, and never make it claim more items than the input holds.
mod properties {
    use super::*;

    /// A random `serde_json::Value`-like tree, `depth` levels at most.
    fn value(rng: &mut Rng, depth: usize) -> serde_json::Value {
        match rng.below(if depth == 0 { 6 } else { 8 }) {
            0 => json!(null),
            1 => json!(rng.below(2) == 0),
            2 => json!(rng.next_u64() >> rng.below(64)),
            3 => json!(-((rng.next_u64() >> (rng.below(63) + 1)) as i64)),
            4 => json!(f64::from(rng.next_u64() as u32) / 7.0),
            5 => {
                let len = rng.len_up_to(40);
                json!(String::from_utf8_lossy(&rng.bytes(len)))
            }
            6 => (0..rng.below(5)).map(|_| value(rng, depth - 1)).collect(),
            _ => (0..rng.below(5))
                .map(|i| (format!("k{i}{}", rng.below(3)), value(rng, depth - 1)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// A random valid encoding of one of several shapes.
    fn encoding(rng: &mut Rng) -> Vec<u8> {
        match rng.below(8) {
            0 => encode(&value(rng, 4)),
            1 => {
                let len = rng.len_up_to(300);
                encode(&rng.bytes(len))
            }
            2 => encode(&vec![
                Internal::Blob { data: rng.bytes(5) },
                Internal::Circle { r: 1.0 },
                Internal::Empty,
            ]),
            3 => encode(&(
                Untagged::Int(rng.next_u64()),
                Untagged::Bytes(rng.bytes(3)),
                Untagged::Point { x: 0.5, y: 2.0 },
            )),
            4 => encode(&Flattened {
                id: rng.next_u64() as u32,
                inner: Sparse { first: None, middle: 1, last: rng.bytes(2) },
                rest: [("x".to_string(), value(rng, 2))].into(),
            }),
            5 => encode(&(External::Struct { a: true, b: vec![External::Tuple(1, 'c')] },)),
            6 => encode(&(0..rng.below(50)).map(|_| rng.next_u64()).collect::<Vec<_>>()),
            _ => encode(&vec![Adjacent::Pair(1, "p".into()), Adjacent::Nothing]),
        }
    }

    /// Reads `bytes` as each of several types; none may panic.
    fn read_as_everything(bytes: &[u8]) {
        let _ = decode::<serde_json::Value>(bytes);
        let _ = decode::<serde::de::IgnoredAny>(bytes);
        let _ = decode::<Vec<u8>>(bytes);
        let _ = decode::<Vec<Vec<u8>>>(bytes);
        let _ = decode::<String>(bytes);
        let _ = decode::<Vec<u64>>(bytes);
        let _ = decode::<(u8, i64, char)>(bytes);
        let _ = decode::<Vec<Internal>>(bytes);
        let _ = decode::<(Untagged, Untagged, Untagged)>(bytes);
        let _ = decode::<Flattened>(bytes);
        let _ = decode::<(External,)>(bytes);
        let _ = decode::<Vec<Adjacent>>(bytes);
        let _ = decode::<Option<Option<u128>>>(bytes);
        let _ = decode::<HashMap<(u8, bool), Vec<char>>>(bytes);
        let mut checked = Decoder {
            rest: bytes,
            names: NameTable::new(),
            depth: 0,
            stack: StackGuard::new(stack_here()),
        };
        let _ = HintChecked(bytes.len()).deserialize(&mut checked);
    }

    #[test]
    fn random_values_round_trip() {
        let mut rng = Rng::new(11);
        for _ in 0..3000 {
            round_trips(value(&mut rng, 5));
        }
    }

    #[test]
    fn damaged_or_random_bytes_never_panic_the_decoder() {
        let mut rng = Rng::new(12);
        for case in 0..20_000 {
            let bytes = if case % 5 == 0 {
                let len = rng.len_up_to(200);
                let mut bytes = rng.bytes(len);
                // Mostly valid tags, so the decoder gets past the first byte.
                let tags = [UNIT, SOME, STR, BYTE_RUN, SEQ, MAP, NAME, NAME_REF, INT + 3];
                for b in &mut bytes {
                    if rng.below(2) == 0 {
                        *b = rng.pick(&tags);
                    }
                }
                bytes
            } else {
                let valid = encoding(&mut rng);
                rng.damage(&valid)
            };
            read_as_everything(&bytes);
        }
    }
}

//! The table of serde shapes that every backend must carry unchanged, as arguments, results
//! and struct-task state.
//!
//! Each row is a value of an everyday serde shape. Rows marked JSON are values that
//! round-trip through `serde_json` (the table checks that too, so it holds what it claims):
//! the promise is that whatever JSON carries, a task carries. The other rows go beyond JSON:
//! NaN, infinities and `-0.0` (JSON writes them as `null`), `Some(None)` (JSON reads it back
//! as `None`) and maps whose keys are not strings or numbers (JSON refuses them).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Config, Pool, Task};

/// Returns its argument: runs a value through a task as argument and result.
pub(crate) fn echo<T>(value: T) -> T {
    value
}

/// A struct task carrying a value as its state: returns that state and its argument, so the
/// state travels too.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Holder<T> {
    /// The state.
    pub(crate) value: T,
}

impl<T> Task for Holder<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Input = T;
    type Output = (T, T);

    fn run(&self, input: T) -> (T, T) {
        (self.value.clone(), input)
    }
}

/// A value a row can carry.
trait Shape: Serialize + DeserializeOwned + PartialEq + Debug + Clone + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + PartialEq + Debug + Clone + Send + Sync + 'static> Shape
    for T
{
}

/// Runs `value` through `pool` as an argument and result (alone and in a batch) and as a
/// struct task's state. With `json`, first checks that `serde_json` round-trips it.
fn carries<T: Shape, P: Pool>(pool: &P, value: T, json: bool) -> Result<(), String> {
    if json {
        let text = serde_json::to_string(&value).map_err(|e| format!("serde_json: {e}"))?;
        let back: T = serde_json::from_str(&text).map_err(|e| format!("serde_json: {e}"))?;
        if back != value {
            return Err(format!("serde_json does not round-trip it: {back:?}"));
        }
    }
    let same = |what: &str, back: &T| {
        if *back == value { Ok(()) } else { Err(format!("{what} came back as {back:?}")) }
    };
    let back = pool.apply(echo::<T>, value.clone()).map_err(|e| format!("apply: {e}"))?;
    same("argument and result", &back)?;
    let batch =
        pool.map(echo::<T>, [value.clone(), value.clone()]).map_err(|e| format!("map: {e}"))?;
    batch.iter().try_for_each(|back| same("a batch item", back))?;
    let holder = Holder { value: value.clone() };
    let (state, input) = pool.apply(holder, value.clone()).map_err(|e| format!("task: {e}"))?;
    same("task state", &state)?;
    same("task argument", &input)
}

/// A plain struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Plain {
    id: u64,
    name: String,
    ratio: f64,
    tags: Vec<u32>,
    ok: bool,
}

/// An internally tagged enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum Internal {
    /// A struct variant.
    Circle {
        /// Radius.
        r: f64,
    },
    /// A newtype variant holding a struct.
    Wrapped(Plain),
    /// Bytes inside a tagged variant.
    Blob {
        /// The bytes.
        data: Vec<u8>,
    },
    /// A unit variant.
    Empty,
}

/// An adjacently tagged enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "c")]
pub(crate) enum Adjacent {
    /// A newtype variant.
    Num(i32),
    /// A tuple variant.
    Pair(u8, String),
    /// A struct variant.
    Named {
        /// An optional field.
        x: Option<u16>,
    },
    /// A unit variant.
    Nothing,
}

/// An untagged enum: the first variant that fits wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Untagged {
    /// An unsigned number.
    Int(u64),
    /// A negative number.
    Neg(i64),
    /// An address, which serializes differently for human-readable formats.
    Addr(IpAddr),
    /// A string.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A struct.
    Point {
        /// x.
        x: f64,
        /// y.
        y: f64,
    },
}

/// An externally tagged enum (serde's default), recursive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum External {
    /// A unit variant.
    Unit,
    /// A newtype variant.
    Newtype(u8),
    /// A tuple variant.
    Tuple(i16, char),
    /// A struct variant.
    Struct {
        /// A flag.
        a: bool,
        /// Nested values.
        b: Vec<External>,
    },
}

/// A struct with fields flattened into it: a struct and a catch-all map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Flattened {
    id: u32,
    #[serde(flatten)]
    inner: Sparse,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// A struct whose fields are left out when empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    first: Option<String>,
    middle: u8,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    last: Vec<u8>,
}

/// Renamed fields, an alias and a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Renamed {
    first_name: String,
    #[serde(alias = "years")]
    age_in_years: u8,
    #[serde(default, skip_serializing)]
    cached: u32,
}

/// A unit struct.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Unit;

/// A struct with no fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Empty {}

/// A newtype struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Newtype(String);

/// A tuple struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TupleStruct(u8, Option<bool>, ());

/// Floats compared by their bits, so NaN equals itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bits(Vec<f64>, f32);

impl PartialEq for Bits {
    fn eq(&self, other: &Self) -> bool {
        let bits = |b: &Bits| (b.0.iter().map(|f| f.to_bits()).collect::<Vec<_>>(), b.1.to_bits());
        bits(self) == bits(other)
    }
}

/// A list nested `depth` levels deep.
fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(json!([]), |inner, _| json!([inner]))
}

/// Runs every row of the table through `pool`; the error names each row that failed and how.
fn run<P: Pool>(pool: &P) -> Result<(), String> {
    let plain =
        Plain { id: 1 << 40, name: "point".into(), ratio: 0.5, tags: vec![1, 300], ok: true };
    let rows: Vec<(&str, Result<(), String>)> = vec![
        ("plain struct", carries(pool, plain.clone(), true)),
        (
            "serde_json::Value",
            carries(
                pool,
                json!({
                    "name": "x", "max": u64::MAX, "neg": -3, "pi": 3.25, "ok": true,
                    "none": null, "list": [1, "two", [3.5], {"k": []}], "empty": {}
                }),
                true,
            ),
        ),
        (
            "internally tagged enum",
            carries(
                pool,
                vec![
                    Internal::Circle { r: 2.0 },
                    Internal::Wrapped(plain.clone()),
                    Internal::Blob { data: vec![0, 1, 255] },
                    Internal::Empty,
                ],
                true,
            ),
        ),
        (
            "adjacently tagged enum",
            carries(
                pool,
                vec![
                    Adjacent::Num(-5),
                    Adjacent::Pair(7, "s".into()),
                    Adjacent::Named { x: None },
                    Adjacent::Named { x: Some(9) },
                    Adjacent::Nothing,
                ],
                true,
            ),
        ),
        (
            "untagged enum",
            carries(
                pool,
                vec![
                    Untagged::Int(5),
                    Untagged::Neg(-5),
                    Untagged::Addr(IpAddr::from([127, 0, 0, 1])),
                    Untagged::Text("t".into()),
                    Untagged::Bytes(vec![1, 2, 3]),
                    Untagged::Point { x: 1.0, y: -1.0 },
                ],
                true,
            ),
        ),
        (
            "externally tagged enum",
            carries(
                pool,
                vec![
                    External::Unit,
                    External::Newtype(3),
                    External::Tuple(-2, 'x'),
                    External::Struct { a: true, b: vec![External::Unit, External::Newtype(1)] },
                ],
                true,
            ),
        ),
        (
            "flatten",
            carries(
                pool,
                Flattened {
                    id: 1,
                    inner: Sparse { first: Some("f".into()), middle: 2, last: vec![] },
                    rest: [("extra".to_string(), json!([1, {"a": null}]))].into(),
                },
                true,
            ),
        ),
        (
            "skip_serializing_if",
            carries(
                pool,
                vec![
                    Sparse { first: None, middle: 1, last: vec![] },
                    Sparse { first: Some("a".into()), middle: 2, last: vec![3] },
                    Sparse { first: None, middle: 3, last: vec![4, 5] },
                ],
                true,
            ),
        ),
        (
            "renamed fields, alias, default",
            carries(pool, Renamed { first_name: "a".into(), age_in_years: 3, cached: 0 }, true),
        ),
        ("options", carries(pool, vec![None, Some("x".to_string()), Some(String::new())], true)),
        (
            "map with integer keys",
            carries(pool, BTreeMap::from([(0u32, "zero".to_string()), (7, "seven".into())]), true),
        ),
        ("char", carries(pool, vec!['\0', 'é', '😀', char::MAX], true)),
        ("u128 and i128", carries(pool, (u128::MAX, i128::MIN, 0u128, -1i128), true)),
        ("integers at their limits", carries(pool, (u64::MAX, i64::MIN, u8::MAX, i8::MIN), true)),
        ("unit struct and unit", carries(pool, (Unit, (), Empty {}), true)),
        (
            "newtype and tuple structs",
            carries(pool, (Newtype("n".into()), TupleStruct(1, None, ())), true),
        ),
        ("nested Vec<Vec<u8>>", carries(pool, vec![vec![], vec![0u8, 255], vec![7; 1000]], true)),
        (
            "borrowed and owned strings",
            carries(
                pool,
                (
                    Cow::<'static, str>::Borrowed("borrowed"),
                    Cow::<'static, str>::Owned("owned".into()),
                    Box::<str>::from("boxed"),
                    "héllo wörld 😀".to_string(),
                ),
                true,
            ),
        ),
        (
            "empty values",
            carries(
                pool,
                (String::new(), Vec::<u8>::new(), BTreeMap::<String, u8>::new(), vec![(); 3]),
                true,
            ),
        ),
        ("large Vec<u8>", carries(pool, vec![0xa5u8; 4 << 20], true)),
        ("large String", carries(pool, "x".repeat(4 << 20), true)),
        ("large Vec of structs", carries(pool, vec![plain.clone(); 10_000], true)),
        (
            "standard library types",
            carries(
                pool,
                (
                    Duration::new(5, 7),
                    IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                    PathBuf::from("/tmp/x"),
                    Range::<u32> { start: 1, end: 9 },
                    [Ok::<u8, String>(1), Err("e".into())],
                    BTreeSet::from([3u8, 1]),
                    VecDeque::from([1u8, 2]),
                    NonZeroU32::MIN,
                ),
                true,
            ),
        ),
        ("deep nesting", carries(pool, nested(100), true)),
        (
            "NaN, infinities and -0.0 (beyond JSON)",
            carries(
                pool,
                Bits(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0], f32::NAN),
                false,
            ),
        ),
        ("Some(None) (beyond JSON)", carries(pool, vec![None, Some(None), Some(Some(3u8))], false)),
        (
            "maps with non-string keys (beyond JSON)",
            carries(
                pool,
                (
                    HashMap::from([((1u8, true), vec!['a']), ((2, false), vec![])]),
                    BTreeMap::from([(vec![1u8], Unit), (vec![], Unit)]),
                ),
                false,
            ),
        ),
    ];
    let failed: Vec<String> = rows
        .into_iter()
        .filter_map(|(name, outcome)| outcome.err().map(|e| format!("{name}: {e}")))
        .collect();
    if failed.is_empty() { Ok(()) } else { Err(failed.join("\n")) }
}

/// Every value of a table of serde shapes comes back unchanged as an argument, a result and a
/// struct task's state: everything `serde_json` round-trips (`serde_json::Value`, internally,
/// adjacently and untagged enums, `flatten`, `skip_serializing_if`, options, maps with
/// integer keys, `char`, `u128`, unit structs, nested and large byte vectors, borrowed and
/// owned strings, empty values), and NaN, infinities, `Some(None)` and maps with keys of any
/// type beyond it.
pub fn serde_shapes<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(1));
    if let Err(failed) = run(&pool) {
        panic!("shapes that did not come back unchanged:\n{failed}");
    }
}

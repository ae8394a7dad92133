//! How arguments, results and task state are encoded between processes.
//!
//! One function pair ([`encode_into`], [`decode`]) and one error type, so the codec can change
//! in one place and other transports can reuse it. The encoding is a small self-describing
//! binary format of this crate's own, chosen by measurement (see `README.md`): every value
//! that round-trips through `serde_json` round-trips through it unchanged, including the
//! shapes that need a self-describing format (`serde_json::Value`, internally tagged,
//! adjacently tagged and untagged enums, `flatten`, `skip_serializing_if`), and more: NaN,
//! infinities and `-0.0` keep their bits, `Some(None)` stays apart from `None`, maps may have
//! keys of any type, and `u128`/`i128` are native.
//!
//! # The format
//!
//! A value is a tag byte and a payload. Lengths and counts are LEB128 varints; fixed-size
//! numbers are little-endian.
//!
//! | tag | value | payload |
//! |---|---|---|
//! | `0x00` | unit, unit struct | none |
//! | `0x01` / `0x02` | `None` / `Some` | none / the value |
//! | `0x03` / `0x04` | `false` / `true` | none |
//! | `0x05` / `0x06` | `f32` / `f64` | its bits (4 / 8 bytes) |
//! | `0x07` | `char` | its scalar value (4 bytes) |
//! | `0x08` | string | length, UTF-8 bytes |
//! | `0x09` | bytes (`serialize_bytes`, e.g. `serde_bytes::ByteBuf`) | length, bytes |
//! | `0x0a` | a sequence of `u8` written as one run (`Vec<u8>`, `[u8]`) | length, bytes |
//! | `0x0b` | sequence, tuple, tuple struct | count, the values |
//! | `0x0c` | map, struct (fields by name) | count, key and value pairs |
//! | `0x0d` | a field or variant name, defined here | length, UTF-8 bytes |
//! | `0x0e` | a field or variant name defined earlier | its number (in order of definition) |
//! | `0x0f` | a string, bytes or run of `u8` (`0x08`–`0x0a`) whose bytes travel apart, in a bulk frame (see below) | that value's tag and length |
//! | `0x40 + (kind << 3) + w` | integer of `kind` (`u8`, `u16`, `u32`, `u64`, `u128`, `i8`, `i16`, `i32`, `i64`, `i128`: 0 to 9) | the value in `1 << w` bytes (sign-extended for signed kinds) |
//!
//! A newtype struct is its content; an enum's unit variant is its name; any other variant is
//! a map of one entry from its name to its content (as in JSON). Names of fields and variants
//! are written once per encoded value and referred to by number after that, so a `Vec` of
//! structs does not repeat its field names. A sequence of bytes travels as one copy each way:
//! the encoder recognizes a slice of `u8` behind `Vec<u8>`'s and `[u8]`'s `Serialize`, and the
//! decoder recognizes serde's own `Vec<u8>` visitor and builds the vector from the run.
//!
//! A large value that is one byte string (a `ByteBuf`, `Vec<u8>` or `String` of megabytes)
//! crosses between processes without its bytes in its encoding: the sender writes them from
//! the encoding (or, a worker, from the value, as the encoder meets them: [`encode_apart`]),
//! in a bulk frame of their own (`wire.rs`), and puts a `0x0f` reference in their place
//! ([`bulk_reference`]); the receiver reads them straight into a vector and lends
//! it to the decoding of the frame that follows ([`with_bulk`]), which hands that vector to
//! the value as it is.
//!
//! The decoder reads bytes another process wrote: it never panics on them, checks every length
//! and count against the bytes left before it allocates, nests at most [`MAX_DEPTH`] levels,
//! and refuses bytes left over after the value. Neither side lets a value overflow its
//! thread's stack: each checks the stack at every level past the first few
//! ([`CHECKED_FROM`], [`stack_reserve`]), and a pool's results decode within
//! [`STACK_BUDGET`].

use std::any::TypeId;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::OnceLock;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use serde::ser::{self, Serialize};

use crate::bulk;
use crate::sys;

/// Appends the encoding of `value` to `out`. On failure `out` is left as it was.
///
/// # Errors
///
/// The value's `Serialize` implementation failed (its own message is kept), or the value nests
/// deeper than [`MAX_DEPTH`] levels.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    encode(value, out, None)
}

/// As [`encode_into`], for a value the caller encodes (an argument, a task's state): a panic of
/// its `Serialize` is printed as any panic is and fails the value as an error would, instead of
/// unwinding out of the pool's call and taking the outcomes of the other items with it (as a
/// result whose `Deserialize` panics fails alone).
///
/// # Errors
///
/// As [`encode_into`], and `its Serialize panicked: ...` with the panic's message.
pub(crate) fn encode_caught<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    let start = out.len();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| encode_into(value, out))) {
        Ok(encoded) => encoded,
        Err(payload) => {
            out.truncate(start);
            let message = taskpool_core::backend::payload_text(&*payload);
            let error = CodecError(format!("its Serialize panicked: {message}"));
            taskpool_core::backend::discard(payload);
            Err(error)
        }
    }
}

/// Where the bytes of a value that is one large byte string go instead of its encoding:
/// given the string's head (as [`byte_string_head`] finds it) and its bytes, it sends the
/// bytes apart (in a bulk frame) and returns `true`, or returns `false` to have them
/// encoded as usual.
pub(crate) type Apart<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> bool;

/// As [`encode_into`], but a value that is one byte string of [`bulk::APART`] or more is
/// offered to `apart` as the encoder meets it, while the value still holds its bytes: where
/// `apart` takes them, only the string's head is appended to `out`, and the bytes are never
/// copied into it.
///
/// # Errors
///
/// As [`encode_into`]; bytes `apart` took stay sent.
pub(crate) fn encode_apart<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    apart: Apart<'_>,
) -> Result<(), CodecError> {
    encode(value, out, Some(apart))
}

#[inline]
fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    apart: Option<Apart<'_>>,
) -> Result<(), CodecError> {
    let start = out.len();
    let names = Names { defined: NameTable::new(), next: 0 };
    let apart = apart.map(|apart| -> &mut dyn FnMut(&[u8], &[u8]) -> bool { apart });
    let mut encoder = Encoder { out, names, depth: 0, start, apart, stack: StackGuard::new(0) };
    value.serialize(&mut encoder).inspect_err(|_| encoder.out.truncate(start))
}

/// Whether `S` is this codec's encoder: what crosses only in its encoding (a queue's handle,
/// shared bytes by reference) asks, to be written otherwise (or refused) by another
/// serializer, whose copy no receiver would ever take back. A question about the type, asked
/// only by such values: encoding anything else costs nothing for it.
pub(crate) fn is_encoder<S>() -> bool {
    std::any::type_name::<S>() == std::any::type_name::<&mut Encoder<'static>>()
}

/// Whether `D` is this codec's decoder (see [`is_encoder`]).
pub(crate) fn is_decoder<D>() -> bool {
    std::any::type_name::<D>() == std::any::type_name::<&mut Decoder<'static>>()
}

/// Decodes a value that must span all of `bytes`.
///
/// # Errors
///
/// The bytes are not a value of this format, do not match `T`, have bytes left over, or `T`'s
/// `Deserialize` implementation refused them (its own message is kept).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_from(bytes, 0)
}

/// As [`decode`], for a pool's result: within [`STACK_BUDGET`], so that it decodes or fails
/// alike on whichever thread reads it.
///
/// # Errors
///
/// As [`decode`].
pub(crate) fn decode_result<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_from(bytes, stack_here())
}

/// [`decode`] and [`decode_result`]: `top` is where the stack budget is counted from, or 0.
fn decode_from<T: DeserializeOwned>(bytes: &[u8], top: usize) -> Result<T, CodecError> {
    crate::shared_bytes::settle_unreceived();
    let mut decoder =
        Decoder { rest: bytes, names: NameTable::new(), depth: 0, stack: StackGuard::new(top) };
    let value = T::deserialize(&mut decoder)?;
    match decoder.rest.len() {
        0 => Ok(value),
        left => Err(left_over(left)),
    }
}

/// Decodes each value of `list` (each a `u32` length and its bytes, as a result frame lists
/// them) into `out`, with one decoder for the whole list, each within [`STACK_BUDGET`] as
/// [`decode_result`] decodes. Stops at the first value that does not decode and returns its
/// error; the values before it are in `out`.
///
/// # Errors
///
/// As [`decode`], for the first value that fails.
pub(crate) fn decode_list<T: DeserializeOwned>(
    list: &[u8],
    out: &mut Vec<T>,
) -> Result<(), CodecError> {
    crate::shared_bytes::settle_unreceived();
    let stack = StackGuard::new(stack_here());
    let mut decoder = Decoder { rest: &[], names: NameTable::new(), depth: 0, stack };
    let mut values = list;
    while let Some((len, rest)) = values.split_first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        let (value, rest) = rest.split_at(len);
        values = rest;
        decoder.rest = value;
        decoder.names.clear();
        let value = T::deserialize(&mut decoder)?;
        if !decoder.rest.is_empty() {
            return Err(left_over(decoder.rest.len()));
        }
        out.push(value);
    }
    Ok(())
}

/// If `encoding` is one byte string (a string, bytes or a run of `u8`), the length of its
/// head (tag and length): the bytes after it are the string's.
pub(crate) fn byte_string_head(encoding: &[u8]) -> Option<usize> {
    let (&tag, rest) = encoding.split_first()?;
    if !matches!(tag, STR | BYTES | BYTE_RUN) {
        return None;
    }
    let mut decoder =
        Decoder { rest, names: NameTable::new(), depth: 0, stack: StackGuard::new(0) };
    let len = decoder.varint().ok()?;
    let head = encoding.len() - decoder.rest.len();
    (usize::try_from(len).ok()? == decoder.rest.len()).then_some(head)
}

/// Appends to `out` the encoding of a byte string whose `head` ([`byte_string_head`]) is
/// given and whose bytes travel apart, in a bulk frame.
pub(crate) fn bulk_reference(out: &mut Vec<u8>, head: &[u8]) {
    out.push(BULK);
    out.extend_from_slice(head);
}

/// Appends `encoding` to `out` whole, for a value that travels on encoded rather than
/// decoded here: a reference to bytes that came apart ([`bulk_reference`]) is replaced by
/// the string's head and the bytes lent to this thread ([`with_bulk`]).
///
/// # Errors
///
/// A reference whose bytes did not come (or came at another length); `out` is left as it
/// was.
pub(crate) fn append_whole(encoding: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let Some((&BULK, head)) = encoding.split_first() else {
        out.extend_from_slice(encoding);
        return Ok(());
    };
    let mut decoder =
        Decoder { rest: head, names: NameTable::new(), depth: 0, stack: StackGuard::new(0) };
    let (_, bytes) = decoder.bulk()?;
    if !decoder.rest.is_empty() {
        return Err(left_over(decoder.rest.len()));
    }
    bulk::reserve(out, head.len() + bytes.len());
    out.extend_from_slice(head);
    out.extend_from_slice(&bytes);
    Ok(())
}

thread_local! {
    /// The bytes a bulk frame brought for the value this thread decodes now.
    static LENT: std::cell::Cell<Option<Vec<u8>>> = const { std::cell::Cell::new(None) };
}

/// The length of the bytes lent to the decoding on this thread (0 when none are).
pub(crate) fn lent_len() -> usize {
    let lent = LENT.take();
    let len = lent.as_ref().map_or(0, Vec::len);
    LENT.set(lent);
    len
}

/// Runs `f` with `bulk` lent to the decoding on this thread: the first bulk reference
/// [`decode`] meets takes it. Whatever `f` did not take is dropped after it, and what was
/// lent before is lent again (a task may decode inside another decoding's `Drop`).
pub(crate) fn with_bulk<R>(bulk: Option<Vec<u8>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Vec<u8>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            LENT.set(self.0.take());
        }
    }
    let _restore = Restore(LENT.replace(bulk));
    f()
}

#[cold]
fn left_over(left: usize) -> CodecError {
    CodecError(format!("{left} bytes left over after the value"))
}

/// Why a value could not be encoded or decoded: the codec's message, or the one a
/// `Serialize` or `Deserialize` implementation gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError(String);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

impl ser::Error for CodecError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CodecError(msg.to_string())
    }
}

impl de::Error for CodecError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        CodecError(msg.to_string())
    }
}

/// The deepest nesting of sequences, maps, options and enum variants a value may have (the
/// decoder recurses once per level, on whatever thread decodes).
pub(crate) const MAX_DEPTH: u32 = 256;

/// The most distinct field and variant names one value defines; more are written in full.
const MAX_NAMES: usize = 1024;

const UNIT: u8 = 0x00;
const NONE: u8 = 0x01;
const SOME: u8 = 0x02;
const FALSE: u8 = 0x03;
const TRUE: u8 = 0x04;
const F32: u8 = 0x05;
const F64: u8 = 0x06;
const CHAR: u8 = 0x07;
const STR: u8 = 0x08;
const BYTES: u8 = 0x09;
const BYTE_RUN: u8 = 0x0a;
const SEQ: u8 = 0x0b;
const MAP: u8 = 0x0c;
const NAME: u8 = 0x0d;
const NAME_REF: u8 = 0x0e;
const BULK: u8 = 0x0f;
/// Integers: `INT + (kind << 3) + w`, the value in `1 << w` bytes.
const INT: u8 = 0x40;
const INT_END: u8 = INT + (10 << 3);

/// The integer kinds, in tag order.
const U8: u8 = 0;
const U16: u8 = 1;
const U32: u8 = 2;
const U64: u8 = 3;
const U128: u8 = 4;
const I8: u8 = 5;
const I16: u8 = 6;
const I32: u8 = 7;
const I64: u8 = 8;
const I128: u8 = 9;

fn depth_error() -> CodecError {
    CodecError(format!("the value nests deeper than {MAX_DEPTH} levels"))
}

/// The most stack the decoding of one of a pool's results may take ([`decode_result`]): each
/// nesting level takes the codec's frames and those of the value's own `Deserialize` (some
/// take hundreds of KiB in a debug build). The parent reads results on its supervisor threads
/// and on callers' threads that join, so a result that needs more fails alike wherever it is
/// read, with an error instead of a stack overflow, which would end the whole program. A
/// thread spawned with the default 2 MiB has this and its [`stack_reserve`] left; the deepest
/// `serde_json::Value`, untagged enum or struct chain the codec nests takes under 1.2 MiB in a
/// debug build. Other values (an argument in a worker's main thread, a one-off's result in
/// the thread that joins it) may take what their thread has, less its reserve.
pub(crate) const STACK_BUDGET: usize = 1536 << 10;

/// The stack a thread keeps free as it enters a nesting level, for the frames of that level: an
/// eighth of its stack, at most 1 MiB. A thread with less room than [`STACK_BUDGET`] above that
/// fails a value before its stack runs out.
pub(crate) fn stack_reserve(size: usize) -> usize {
    (size / 8).min(1 << 20)
}

/// The address of a local of the caller's frame: where its thread's stack is now.
#[inline(never)]
pub(crate) fn stack_here() -> usize {
    let here = 0u8;
    std::hint::black_box(std::ptr::addr_of!(here)) as usize
}

/// Fails if an encoding or decoding (`doing`) that began with the stack at `top` (0: no
/// budget) has taken more than [`STACK_BUDGET`] at `depth` levels, or if its thread has less
/// than its [`stack_reserve`] left.
fn check_stack(top: usize, depth: u32, doing: &str) -> Result<(), CodecError> {
    let here = stack_here();
    if top.saturating_sub(here) > STACK_BUDGET {
        return Err(CodecError(format!(
            "the value nests too deep: {doing} it took more than {} KiB of stack {depth} levels \
             in",
            STACK_BUDGET >> 10,
        )));
    }
    match sys::stack_left(here) {
        Some((left, size)) if left < stack_reserve(size) => Err(CodecError(format!(
            "the value nests too deep for the {} KiB stack of the thread {doing} it: {} KiB \
             left {depth} levels in",
            size >> 10,
            left >> 10,
        ))),
        _ => Ok(()),
    }
}

/// The nesting level from which the stack is checked. A value that nests less takes a few
/// levels' frames, which a thread with room for its caller's own frames has, as it would
/// without a pool; and most values do (a struct of tuples, a vector of structs), so they pay
/// nothing for the check (finding a thread's stack costs a few nanoseconds a value, a tenth
/// of a small struct's whole trip through a `map`).
const CHECKED_FROM: u32 = 4;

/// The stack check of one encoding or decoding ([`check_stack`]), made cheap: the lowest
/// address its stack may reach is found at the first nesting level (a value that does not
/// nest never asks), and each level compares the stack's place with it.
#[derive(Debug, Clone, Copy)]
struct StackGuard {
    /// Where the stack was when the decoding began (a pool's result), or 0 for no budget.
    top: usize,
    /// The lowest address the stack may reach, once known.
    floor: Option<usize>,
}

impl StackGuard {
    const fn new(top: usize) -> Self {
        StackGuard { top, floor: None }
    }

    /// As [`check_stack`] at `depth` levels, from [`CHECKED_FROM`] levels on.
    #[inline]
    fn check(&mut self, depth: u32, doing: &str) -> Result<(), CodecError> {
        if depth < CHECKED_FROM {
            return Ok(());
        }
        self.check_deep(depth, doing)
    }

    fn check_deep(&mut self, depth: u32, doing: &str) -> Result<(), CodecError> {
        let here = stack_here();
        let top = self.top;
        let floor = *self.floor.get_or_insert_with(|| {
            let budget = top.saturating_sub(STACK_BUDGET);
            let reserve = sys::stack_left(here)
                .map_or(0, |(left, size)| (here - left).saturating_add(stack_reserve(size)));
            budget.max(reserve)
        });
        if here >= floor { Ok(()) } else { check_stack(top, depth, doing) }
    }
}

/// How many names a table holds before it allocates.
const INLINE_NAMES: usize = 8;

/// Field and variant names by number, in order of definition: the first few inline (set up
/// at the first name, so a value without structs or enums pays nothing), the rest in a `Vec`.
struct NameTable<'n> {
    first: Option<[&'n str; INLINE_NAMES]>,
    more: Vec<&'n str>,
    len: usize,
}

impl<'n> NameTable<'n> {
    fn new() -> Self {
        NameTable { first: None, more: Vec::new(), len: 0 }
    }

    /// Forgets every name (a new value defines its own).
    #[inline]
    fn clear(&mut self) {
        self.len = 0;
        self.more.clear();
    }

    fn get(&self, i: usize) -> Option<&'n str> {
        if i >= self.len {
            return None;
        }
        match &self.first {
            Some(first) if i < INLINE_NAMES => Some(first[i]),
            _ => self.more.get(i - INLINE_NAMES).copied(),
        }
    }

    fn push(&mut self, name: &'n str) {
        let first = self.first.get_or_insert([""; INLINE_NAMES]);
        match first.get_mut(self.len) {
            Some(slot) => *slot = name,
            None => self.more.push(name),
        }
        self.len += 1;
    }

    /// The number of `name`, found by address: a name is a `&'static str` of the type's
    /// `Serialize` implementation, the same each time. (A copy of it elsewhere is defined
    /// again, which costs bytes, not correctness.)
    fn find(&self, name: &str) -> Option<usize> {
        let same = |known: &&str| known.as_ptr() == name.as_ptr() && known.len() == name.len();
        let first = self.first.as_ref()?;
        match first[..self.len.min(INLINE_NAMES)].iter().position(same) {
            Some(i) => Some(i),
            None => self.more.iter().position(same).map(|i| i + INLINE_NAMES),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// The names an encoder has written.
struct Names {
    defined: NameTable<'static>,
    /// The number most likely to come next: fields of a struct repeat in order.
    next: usize,
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    names: Names,
    depth: u32,
    /// Where the value's encoding starts in `out`.
    start: usize,
    /// Where a value that is one large byte string may send its bytes ([`encode_apart`]).
    apart: Option<Apart<'a>>,
    stack: StackGuard,
}

impl<'a> Encoder<'a> {
    #[inline]
    fn varint(&mut self, v: u64) {
        put_varint(self.out, v);
    }

    #[inline]
    fn tag_len(&mut self, tag: u8, len: usize) {
        self.out.push(tag);
        self.varint(len as u64);
    }

    /// Writes a byte string of `tag`: its head, then its bytes, unless it is the whole value,
    /// [`bulk::APART`] or more, and sent apart ([`encode_apart`]).
    #[inline]
    fn byte_string(&mut self, tag: u8, bytes: &[u8]) {
        let whole = self.depth == 0 && self.out.len() == self.start;
        self.tag_len(tag, bytes.len());
        if bytes.len() >= bulk::APART && whole {
            let head = &self.out[self.start..];
            if self.apart.take().is_some_and(|apart| apart(head, bytes)) {
                return;
            }
        }
        bulk::reserve(self.out, bytes.len());
        self.out.extend_from_slice(bytes);
    }

    /// Writes an integer of `kind` whose value fits in `1 << w` bytes: the tag and eight
    /// bytes in one fixed-size copy, then the bytes not needed are dropped.
    #[inline]
    fn int(&mut self, kind: u8, w: u8, bits: u64) {
        let mut buf = [0; 9];
        buf[0] = INT + (kind << 3) + w;
        buf[1..].copy_from_slice(&bits.to_le_bytes());
        self.out.extend_from_slice(&buf);
        self.out.truncate(self.out.len() - (8 - (1 << w)));
    }

    #[inline]
    fn unsigned(&mut self, kind: u8, v: u64) {
        let w = match v {
            0..=0xff => 0,
            0x100..=0xffff => 1,
            0x1_0000..=0xffff_ffff => 2,
            _ => 3,
        };
        self.int(kind, w, v);
    }

    #[inline]
    fn signed(&mut self, kind: u8, v: i64) {
        let w = if v == i64::from(v as i8) {
            0
        } else if v == i64::from(v as i16) {
            1
        } else if v == i64::from(v as i32) {
            2
        } else {
            3
        };
        self.int(kind, w, v as u64);
    }

    fn wide(&mut self, kind: u8, bytes: [u8; 16]) {
        self.out.push(INT + (kind << 3) + 4);
        self.out.extend_from_slice(&bytes);
    }

    /// Writes a field or variant name: a reference to it once it is defined. The usual cases
    /// inline: the name follows the last one written (the next field of a struct), or is the
    /// first (a struct's first field again, in a sequence of them), among the first 128.
    #[inline]
    fn name(&mut self, name: &'static str) {
        let same = |known: &str| known.as_ptr() == name.as_ptr() && known.len() == name.len();
        let names = &mut self.names;
        let guess = match names.defined.get(names.next) {
            Some(guess) if same(guess) => Some(names.next),
            _ if names.defined.get(0).is_some_and(same) => Some(0),
            _ => None,
        };
        match guess {
            Some(i) if i < 0x80 => {
                names.next = i + 1;
                self.out.extend_from_slice(&[NAME_REF, i as u8]);
            }
            _ => self.other_name(name),
        }
    }

    /// [`Encoder::name`]'s other cases, out of line.
    #[inline(never)]
    fn other_name(&mut self, name: &'static str) {
        let names = &mut self.names;
        let found = match names.defined.get(names.next) {
            Some(guess) if guess.as_ptr() == name.as_ptr() && guess.len() == name.len() => {
                Some(names.next)
            }
            _ => names.defined.find(name),
        };
        match found {
            Some(i) => {
                names.next = i + 1;
                self.out.push(NAME_REF);
                self.varint(i as u64);
            }
            None if names.defined.len < MAX_NAMES => {
                names.defined.push(name);
                names.next = names.defined.len;
                self.tag_len(NAME, name.len());
                self.out.extend_from_slice(name.as_bytes());
            }
            None => {
                self.tag_len(STR, name.len());
                self.out.extend_from_slice(name.as_bytes());
            }
        }
    }

    #[inline]
    fn enter(&mut self) -> Result<(), CodecError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(depth_error());
        }
        self.stack.check(self.depth, "encoding")
    }

    /// Starts a sequence or map of `len` entries (a guess when `None`, fixed at the end).
    #[inline]
    fn open<'e>(&'e mut self, tag: u8, len: Option<usize>) -> Result<Compound<'e, 'a>, CodecError> {
        self.enter()?;
        let declared = len.unwrap_or(0);
        self.out.push(tag);
        let header = self.out.len();
        self.varint(declared as u64);
        Ok(Compound { enc: self, header, declared, count: 0, levels: 1 })
    }

    /// Starts a variant whose content is a sequence or map of `len` entries.
    fn open_variant<'e>(
        &'e mut self,
        variant: &'static str,
        tag: u8,
        len: usize,
    ) -> Result<Compound<'e, 'a>, CodecError> {
        self.variant(variant)?;
        let mut content = self.open(tag, Some(len))?;
        content.levels = 2;
        Ok(content)
    }

    /// Starts a variant with content: a map of one entry from its name to the content.
    fn variant(&mut self, variant: &'static str) -> Result<(), CodecError> {
        self.enter()?;
        self.out.push(MAP);
        self.out.push(1);
        self.name(variant);
        Ok(())
    }
}

/// `Some(bytes)` if `iter` is an iterator over a slice of bytes.
fn as_byte_slice<'a, I: 'a>(iter: &'a I) -> Option<&'a [u8]> {
    if typeid::of::<I>() != typeid::of::<std::slice::Iter<'static, u8>>() {
        return None;
    }
    // SAFETY: the type ids are equal, so `I` is `slice::Iter<'b, u8>` for some lifetime 'b
    // (type ids differ in everything but lifetimes), and 'b outlives 'a because `I: 'a`; so
    // `iter` points to a valid `slice::Iter<'a, u8>`, and the slice it yields is borrowed for
    // no longer than `iter` is.
    let iter = unsafe { &*(iter as *const I).cast::<std::slice::Iter<'a, u8>>() };
    Some(iter.as_slice())
}

/// Integer methods of the encoder: the value in as few bytes as hold it, under its kind.
macro_rules! serialize_integers {
    ($($method:ident($ty:ty) => $how:ident($kind:ident);)*) => {$(
        #[inline]
        fn $method(self, v: $ty) -> Result<(), CodecError> {
            self.$how($kind, v.into());
            Ok(())
        }
    )*};
}

impl<'e, 'a> ser::Serializer for &'e mut Encoder<'a> {
    type Ok = ();
    type Error = CodecError;
    type SerializeSeq = Compound<'e, 'a>;
    type SerializeTuple = Compound<'e, 'a>;
    type SerializeTupleStruct = Compound<'e, 'a>;
    type SerializeTupleVariant = Compound<'e, 'a>;
    type SerializeMap = Compound<'e, 'a>;
    type SerializeStruct = Compound<'e, 'a>;
    type SerializeStructVariant = Compound<'e, 'a>;

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), CodecError> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }

    serialize_integers! {
        serialize_i8(i8) => signed(I8);
        serialize_i16(i16) => signed(I16);
        serialize_i32(i32) => signed(I32);
        serialize_i64(i64) => signed(I64);
        serialize_u8(u8) => unsigned(U8);
        serialize_u16(u16) => unsigned(U16);
        serialize_u32(u32) => unsigned(U32);
        serialize_u64(u64) => unsigned(U64);
    }

    fn serialize_i128(self, v: i128) -> Result<(), CodecError> {
        self.wide(I128, v.to_le_bytes());
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), CodecError> {
        self.wide(U128, v.to_le_bytes());
        Ok(())
    }

    /// The tag and the bits in one fixed-size copy (one check of the room left, not two).
    #[inline]
    fn serialize_f32(self, v: f32) -> Result<(), CodecError> {
        let mut buf = [F32; 5];
        buf[1..].copy_from_slice(&v.to_bits().to_le_bytes());
        self.out.extend_from_slice(&buf);
        Ok(())
    }

    /// As `serialize_f32`.
    #[inline]
    fn serialize_f64(self, v: f64) -> Result<(), CodecError> {
        let mut buf = [F64; 9];
        buf[1..].copy_from_slice(&v.to_bits().to_le_bytes());
        self.out.extend_from_slice(&buf);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), CodecError> {
        self.out.push(CHAR);
        self.out.extend_from_slice(&u32::from(v).to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), CodecError> {
        self.byte_string(STR, v.as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CodecError> {
        self.byte_string(BYTES, v);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result<(), CodecError> {
        self.out.push(NONE);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CodecError> {
        self.enter()?;
        self.out.push(SOME);
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }

    #[inline]
    fn serialize_unit(self) -> Result<(), CodecError> {
        self.out.push(UNIT);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CodecError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CodecError> {
        self.name(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CodecError> {
        self.variant(variant)?;
        value.serialize(&mut *self)?;
        self.depth -= 1;
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'e, 'a>, CodecError> {
        self.open(SEQ, len)
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'e, 'a>, CodecError> {
        self.open(SEQ, Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'e, 'a>, CodecError> {
        self.open(SEQ, Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'e, 'a>, CodecError> {
        self.open_variant(variant, SEQ, len)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'e, 'a>, CodecError> {
        self.open(MAP, len)
    }

    #[inline]
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'e, 'a>, CodecError> {
        self.open(MAP, Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'e, 'a>, CodecError> {
        self.open_variant(variant, MAP, len)
    }

    /// Writes a slice of bytes (what `Vec<u8>`, `[u8]` and their kin serialize as) as one
    /// run, and anything else as a sequence.
    fn collect_seq<I>(self, iter: I) -> Result<(), CodecError>
    where
        I: IntoIterator,
        I::Item: Serialize,
    {
        let iter = iter.into_iter();
        if let Some(bytes) = as_byte_slice(&iter) {
            self.byte_string(BYTE_RUN, bytes);
            return Ok(());
        }
        let len = match iter.size_hint() {
            (low, Some(high)) if low == high => Some(low),
            _ => None,
        };
        let mut seq = self.open(SEQ, len)?;
        for item in iter {
            ser::SerializeSeq::serialize_element(&mut seq, &item)?;
        }
        ser::SerializeSeq::end(seq)
    }

    /// Human-readable, like JSON: serde's buffering of untagged and internally tagged enums
    /// and of `flatten` replays a value as human-readable, so a type that serializes
    /// differently by format (`IpAddr`, for one) must have been written that way too.
    fn is_human_readable(&self) -> bool {
        true
    }
}

/// A sequence or map being written: its count is fixed at the end if the `Serialize`
/// implementation's length was wrong or unknown.
struct Compound<'e, 'a> {
    enc: &'e mut Encoder<'a>,
    /// Where the count starts in the output.
    header: usize,
    declared: usize,
    count: usize,
    /// Nesting levels it closes: 2 for a variant's content (the variant's map and its own).
    levels: u32,
}

impl Compound<'_, '_> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        self.count += 1;
        value.serialize(&mut *self.enc)
    }

    #[inline]
    fn finish(self) -> Result<(), CodecError> {
        if self.count != self.declared {
            let mut count = Vec::with_capacity(10);
            put_varint(&mut count, self.count as u64);
            let old = varint_len(self.declared as u64);
            self.enc.out.splice(self.header..self.header + old, count);
        }
        self.enc.depth -= self.levels;
        Ok(())
    }
}

/// Appends `v` as a LEB128 varint.
#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// How many bytes [`put_varint`] writes for `v`.
#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The sequence traits: every element counts as one.
macro_rules! sequence_impls {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = CodecError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
                self.element(value)
            }

            fn end(self) -> Result<(), CodecError> {
                self.finish()
            }
        }
    )*};
}

sequence_impls!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = CodecError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CodecError> {
        self.element(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        value.serialize(&mut *self.enc)
    }

    fn end(self) -> Result<(), CodecError> {
        self.finish()
    }
}

/// The struct traits: every field is a name and a value.
macro_rules! struct_impls {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = CodecError;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CodecError> {
                self.count += 1;
                self.enc.name(key);
                value.serialize(&mut *self.enc)
            }

            fn end(self) -> Result<(), CodecError> {
                self.finish()
            }
        }
    )*};
}

struct_impls!(SerializeStruct, SerializeStructVariant);

// ---------------------------------------------------------------------------------------------
// Decoding

/// The name under which `serde_json::value::RawValue` (JSON text kept unparsed) writes itself
/// as a struct of one field, and reads itself back as a newtype struct.
const RAW_JSON: &str = "$serde_json::private::RawValue";

struct Decoder<'de> {
    rest: &'de [u8],
    /// The names defined so far, by number.
    names: NameTable<'de>,
    depth: u32,
    stack: StackGuard,
}

fn eof() -> CodecError {
    CodecError("the value ends early".into())
}

impl<'de> Decoder<'de> {
    #[inline]
    fn peek(&self) -> Result<u8, CodecError> {
        self.rest.first().copied().ok_or_else(eof)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.rest.split_first().ok_or_else(eof)?;
        self.rest = rest;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'de [u8], CodecError> {
        if n > self.rest.len() {
            return Err(eof());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                if shift == 63 && b > 1 {
                    break;
                }
                return Ok(v);
            }
        }
        Err(CodecError("a length is out of range".into()))
    }

    /// A count of items that each take at least `per_item` bytes, checked against the bytes
    /// left, so nothing is sized by a count the input cannot hold.
    #[inline]
    fn count(&mut self, per_item: usize) -> Result<usize, CodecError> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(per_item) <= self.rest.len() => Ok(n),
            _ => Err(CodecError(format!(
                "a length of {n} is more than the {} bytes left",
                self.rest.len()
            ))),
        }
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'de [u8], CodecError> {
        let n = self.count(1)?;
        self.take(n)
    }

    #[inline]
    fn str(&mut self) -> Result<&'de str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(not_utf8)
    }

    /// After a [`BULK`] tag: the tag of the byte string it stands for, and its bytes, taken
    /// from what [`with_bulk`] lent.
    fn bulk(&mut self) -> Result<(u8, Vec<u8>), CodecError> {
        let tag = self.byte()?;
        if !matches!(tag, STR | BYTES | BYTE_RUN) {
            return Err(bad_tag(tag));
        }
        let len = self.varint()?;
        match LENT.take() {
            Some(bytes) if bytes.len() as u64 == len => Ok((tag, bytes)),
            Some(bytes) => Err(CodecError(format!(
                "a bulk of {} bytes came for a value of {len} bytes",
                bytes.len()
            ))),
            None => Err(CodecError("the bytes of a large value did not arrive".into())),
        }
    }

    /// The name after a [`NAME`] or [`NAME_REF`] tag.
    fn name(&mut self, tag: u8) -> Result<&'de str, CodecError> {
        if tag == NAME {
            if self.names.len >= MAX_NAMES {
                return Err(CodecError("too many names".into()));
            }
            let name = self.str()?;
            self.names.push(name);
            Ok(name)
        } else {
            let n = self.varint()?;
            usize::try_from(n)
                .ok()
                .and_then(|i| self.names.get(i))
                .ok_or_else(|| CodecError(format!("name {n} is not defined")))
        }
    }

    #[inline]
    fn enter(&mut self) -> Result<(), CodecError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(depth_error());
        }
        self.stack.check(self.depth, "decoding")
    }

    /// Hands the items after a [`SEQ`] (`per_item` 1) or [`MAP`] (2) tag to `visit`, and
    /// checks that it read them all.
    fn items<T>(
        &mut self,
        per_item: usize,
        visit: impl FnOnce(&mut Items<'_, 'de>) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        self.enter()?;
        let count = self.count(per_item)?;
        let mut items = Items { de: self, left: count };
        let value = visit(&mut items)?;
        if items.left > 0 {
            let what = if per_item == 1 { "elements" } else { "entries" };
            return Err(CodecError(format!("{} of {count} {what} were not read", items.left)));
        }
        self.depth -= 1;
        Ok(value)
    }

    /// The integer after `tag`, as its kind's visitor call.
    fn integer<V: Visitor<'de>>(&mut self, tag: u8, visitor: V) -> Result<V::Value, CodecError> {
        let kind = (tag - INT) >> 3;
        let w = tag & 7;
        let max = match kind {
            U8 | I8 => 0,
            U16 | I16 => 1,
            U32 | I32 => 2,
            U64 | I64 => 3,
            _ => 4,
        };
        if w > max {
            return Err(CodecError(format!("bad integer tag {tag:#04x}")));
        }
        if w == 4 {
            let bytes = self.array::<16>()?;
            return match kind {
                U128 => visitor.visit_u128(u128::from_le_bytes(bytes)),
                _ => visitor.visit_i128(i128::from_le_bytes(bytes)),
            };
        }
        let bits = self.word(w)?;
        let (low, signed) = (bits, sign_extend(bits, w));
        // The casts below cannot lose bits: `w <= max` keeps the value within its kind.
        match kind {
            U8 => visitor.visit_u8(low as u8),
            U16 => visitor.visit_u16(low as u16),
            U32 => visitor.visit_u32(low as u32),
            U64 => visitor.visit_u64(low),
            I8 => visitor.visit_i8(signed as i8),
            I16 => visitor.visit_i16(signed as i16),
            I32 => visitor.visit_i32(signed as i32),
            _ => visitor.visit_i64(signed),
        }
    }

    /// What an integer method of the decoder reads when the next value is not an integer of
    /// its own kind: another integer, or anything else through `deserialize_any`. Kept out
    /// of line, so that the methods' own case is small enough to inline where values are
    /// decoded.
    #[inline(never)]
    fn other_than_own_integer<V: Visitor<'de>>(
        &mut self,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        match *self.rest {
            [tag @ INT..INT_END, ..] => {
                self.rest = &self.rest[1..];
                self.integer(tag, visitor)
            }
            _ => de::Deserializer::deserialize_any(self, visitor),
        }
    }

    /// `deserialize_identifier`'s other cases, out of line.
    #[inline(never)]
    fn other_identifier<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, CodecError> {
        match self.peek()? {
            tag @ (NAME | NAME_REF) => {
                self.byte()?;
                visitor.visit_borrowed_str(self.name(tag)?)
            }
            _ => de::Deserializer::deserialize_any(self, visitor),
        }
    }

    /// `deserialize_any`, kept out of line: for the methods whose own case is small enough
    /// to inline where values are decoded.
    #[inline(never)]
    fn any_out_of_line<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_any(self, visitor)
    }

    /// The `1 << w` bytes of an integer (`w <= 3`), zero-extended.
    #[inline]
    fn word(&mut self, w: u8) -> Result<u64, CodecError> {
        let rest = self.rest;
        let (bits, n) = match w {
            0 => (rest.first().map(|b| u64::from(*b)), 1),
            1 => (rest.first_chunk().map(|b| u64::from(u16::from_le_bytes(*b))), 2),
            2 => (rest.first_chunk().map(|b| u64::from(u32::from_le_bytes(*b))), 4),
            _ => (rest.first_chunk().map(|b| u64::from_le_bytes(*b)), 8),
        };
        let bits = bits.ok_or_else(eof)?;
        self.rest = &rest[n..];
        Ok(bits)
    }

    /// Reads past one value without building it (names it defines are still recorded).
    fn skip(&mut self) -> Result<(), CodecError> {
        let tag = self.byte()?;
        match tag {
            UNIT | NONE | FALSE | TRUE => {}
            F32 | CHAR => {
                self.take(4)?;
            }
            F64 => {
                self.take(8)?;
            }
            STR | BYTES | BYTE_RUN => {
                self.bytes()?;
            }
            BULK => {
                self.bulk()?;
            }
            NAME | NAME_REF => {
                self.name(tag)?;
            }
            INT..INT_END => {
                self.integer(tag, de::IgnoredAny)?;
            }
            SOME | SEQ | MAP => {
                self.enter()?;
                let n = match tag {
                    SOME => 1,
                    SEQ => self.count(1)?,
                    _ => self.count(2)?.saturating_mul(2),
                };
                for _ in 0..n {
                    self.skip()?;
                }
                self.depth -= 1;
            }
            _ => return Err(bad_tag(tag)),
        }
        Ok(())
    }
}

/// The `1 << w` low bytes of `bits` as a signed number.
fn sign_extend(bits: u64, w: u8) -> i64 {
    let shift = 64 - (8 << w);
    ((bits << shift) as i64) >> shift
}

fn not_utf8(e: impl fmt::Display) -> CodecError {
    CodecError(format!("a string is not UTF-8: {e}"))
}

fn bad_tag(tag: u8) -> CodecError {
    CodecError(format!("unknown tag {tag:#04x}"))
}

/// The type of serde's own visitor for `Vec<u8>`, found once by asking `Vec<u8>` to
/// deserialize from a probe; `None` if it does not ask for a sequence.
fn vec_u8_visitor() -> Option<TypeId> {
    static VISITOR: OnceLock<Option<TypeId>> = OnceLock::new();
    *VISITOR.get_or_init(|| {
        let mut probe = Probe(None);
        let _ = <Vec<u8> as de::Deserialize>::deserialize(&mut probe);
        probe.0
    })
}

/// Records the type of the visitor a `deserialize_seq` call is given, and fails.
struct Probe(Option<TypeId>);

impl<'de> de::Deserializer<'de> for &mut Probe {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, CodecError> {
        Err(CodecError("probe".into()))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, CodecError> {
        self.0 = Some(typeid::of::<V>());
        Err(CodecError("probe".into()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// `bytes` as the value of a visitor that makes a `Vec<u8>` ([`is_vec_u8_visitor`]), moved.
fn vec_u8_value<'de, V: Visitor<'de>>(bytes: Vec<u8>) -> V::Value {
    assert!(is_vec_u8_visitor::<V>(), "not a Vec<u8> visitor");
    let bytes = ManuallyDrop::new(bytes);
    // SAFETY: `V::Value` is `Vec<u8>` (checked above; type ids differ in everything but
    // lifetimes, and `Vec<u8>` has none), so reading the vector as a `V::Value` moves it;
    // `ManuallyDrop` keeps it from being dropped twice.
    unsafe { std::ptr::read((&raw const *bytes).cast::<V::Value>()) }
}

/// Hands a byte string that came in a bulk frame (`tag` says which kind) to `visitor`, as
/// an owned vector or string where it takes one.
fn visit_bulk<'de, V: Visitor<'de>>(
    tag: u8,
    bytes: Vec<u8>,
    visitor: V,
) -> Result<V::Value, CodecError> {
    match tag {
        STR => visitor.visit_string(String::from_utf8(bytes).map_err(not_utf8)?),
        BYTES => visitor.visit_byte_buf(bytes),
        _ => {
            let mut seq = de::value::SeqDeserializer::<_, CodecError>::new(bytes.into_iter());
            let value = visitor.visit_seq(&mut seq)?;
            seq.end()?;
            Ok(value)
        }
    }
}

/// Whether `V` is serde's `Vec<u8>` visitor, whose value is exactly the bytes it visits.
fn is_vec_u8_visitor<'de, V: Visitor<'de>>() -> bool {
    typeid::of::<V::Value>() == TypeId::of::<Vec<u8>>()
        && vec_u8_visitor().is_some_and(|id| id == typeid::of::<V>())
}

/// Integer methods of the decoder: the integer of the method's own kind read in place (the
/// way an encoder writes it), any other integer through [`Decoder::integer`], anything else
/// through `deserialize_any`.
macro_rules! deserialize_integers {
    ($($method:ident $kind:ident $max:literal |$bits:ident, $w:ident| $visit:ident($value:expr);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
            match *self.rest {
                [tag, ..] if tag & !7 == INT + ($kind << 3) && tag & 7 <= $max => {
                    self.rest = &self.rest[1..];
                    let $w = tag & 7;
                    let $bits = self.word($w)?;
                    visitor.$visit($value)
                }
                _ => self.other_than_own_integer(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let tag = self.byte()?;
        match tag {
            INT..INT_END => self.integer(tag, visitor),
            UNIT => visitor.visit_unit(),
            NONE => visitor.visit_none(),
            SOME => {
                self.enter()?;
                let value = visitor.visit_some(&mut *self)?;
                self.depth -= 1;
                Ok(value)
            }
            FALSE => visitor.visit_bool(false),
            TRUE => visitor.visit_bool(true),
            F32 => visitor.visit_f32(f32::from_bits(u32::from_le_bytes(self.array()?))),
            F64 => visitor.visit_f64(f64::from_bits(u64::from_le_bytes(self.array()?))),
            CHAR => {
                let code = u32::from_le_bytes(self.array()?);
                let c = char::from_u32(code)
                    .ok_or_else(|| CodecError(format!("{code:#x} is not a char")))?;
                visitor.visit_char(c)
            }
            STR => visitor.visit_borrowed_str(self.str()?),
            NAME | NAME_REF => visitor.visit_borrowed_str(self.name(tag)?),
            BYTES => visitor.visit_borrowed_bytes(self.bytes()?),
            BYTE_RUN => {
                let bytes = self.bytes()?;
                let mut seq =
                    de::value::SeqDeserializer::<_, CodecError>::new(bytes.iter().copied());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            SEQ => self.items(1, |items| visitor.visit_seq(items)),
            MAP => self.items(2, |items| visitor.visit_map(items)),
            BULK => {
                let (tag, bytes) = self.bulk()?;
                visit_bulk(tag, bytes, visitor)
            }
            _ => Err(bad_tag(tag)),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.peek()? {
            BYTES | BYTE_RUN if is_vec_u8_visitor::<V>() => {
                self.byte()?;
                Ok(vec_u8_value::<V>(bulk::copy(self.bytes()?)))
            }
            BULK if is_vec_u8_visitor::<V>() => {
                self.byte()?;
                match self.bulk()? {
                    (BYTES | BYTE_RUN, bytes) => Ok(vec_u8_value::<V>(bytes)),
                    (tag, bytes) => visit_bulk(tag, bytes, visitor),
                }
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.peek()? {
            BYTES | BYTE_RUN => {
                self.byte()?;
                visitor.visit_borrowed_bytes(self.bytes()?)
            }
            BULK => {
                self.byte()?;
                let (_, bytes) = self.bulk()?;
                visitor.visit_byte_buf(bytes)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    /// A large byte string is handed over as a vector made at its size (see `bulk.rs`), which
    /// a visitor that takes ownership (`serde_bytes::ByteBuf`'s) keeps as it is.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match *self.rest {
            [BYTES | BYTE_RUN, ..] if self.rest.len() > bulk::LARGE => {
                self.byte()?;
                let bytes = self.bytes()?;
                if bytes.len() < bulk::LARGE {
                    return visitor.visit_borrowed_bytes(bytes);
                }
                visitor.visit_byte_buf(bulk::copy(bytes))
            }
            _ => self.deserialize_bytes(visitor),
        }
    }

    /// A large string is handed over as a `String` made at its size, as byte strings are.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match *self.rest {
            [STR, ..] if self.rest.len() > bulk::LARGE => {
                self.byte()?;
                let bytes = self.bytes()?;
                if bytes.len() < bulk::LARGE {
                    let text = std::str::from_utf8(bytes).map_err(not_utf8)?;
                    return visitor.visit_borrowed_str(text);
                }
                visitor.visit_string(String::from_utf8(bulk::copy(bytes)).map_err(not_utf8)?)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.peek()? {
            NONE | UNIT => {
                self.byte()?;
                visitor.visit_none()
            }
            SOME => self.deserialize_any(visitor),
            // Like JSON: a value that is not an option is its own `Some`.
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match self.peek()? {
            NONE => {
                self.byte()?;
                visitor.visit_unit()
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        if name == RAW_JSON {
            // `serde_json`'s raw JSON text is written as a struct of one field and read back
            // as a newtype, expecting that struct as a map: give it the map.
            return self.deserialize_any(visitor);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        let tag = self.byte()?;
        match tag {
            NAME | NAME_REF => visitor.visit_enum(unit_variant(self.name(tag)?)),
            STR => visitor.visit_enum(unit_variant(self.str()?)),
            MAP => {
                self.enter()?;
                if self.count(2)? != 1 {
                    return Err(CodecError("an enum's map must have one entry".into()));
                }
                let value = visitor.visit_enum(Variant { de: &mut *self })?;
                self.depth -= 1;
                Ok(value)
            }
            _ => Err(CodecError(format!("expected an enum, found tag {tag:#04x}"))),
        }
    }

    /// The usual case inline: a name defined earlier, among the first 128.
    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if let [NAME_REF, i @ 0..0x80, ..] = *self.rest {
            if let Some(name) = self.names.get(usize::from(i)) {
                self.rest = &self.rest[2..];
                return visitor.visit_borrowed_str(name);
            }
        }
        self.other_identifier(visitor)
    }

    deserialize_integers! {
        deserialize_u8 U8 0 |bits, _w| visit_u8(bits as u8);
        deserialize_u16 U16 1 |bits, _w| visit_u16(bits as u16);
        deserialize_u32 U32 2 |bits, _w| visit_u32(bits as u32);
        deserialize_u64 U64 3 |bits, _w| visit_u64(bits);
        deserialize_i8 I8 0 |bits, w| visit_i8(sign_extend(bits, w) as i8);
        deserialize_i16 I16 1 |bits, w| visit_i16(sign_extend(bits, w) as i16);
        deserialize_i32 I32 2 |bits, w| visit_i32(sign_extend(bits, w) as i32);
        deserialize_i64 I64 3 |bits, w| visit_i64(sign_extend(bits, w));
    }

    /// `true` and `false` are read in place; anything else goes through `deserialize_any`,
    /// out of line.
    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        match *self.rest {
            [tag @ (FALSE | TRUE), ..] => {
                self.rest = &self.rest[1..];
                visitor.visit_bool(tag == TRUE)
            }
            _ => self.any_out_of_line(visitor),
        }
    }

    /// A float of the method's own width is read in place (the way an encoder writes it);
    /// anything else (an integer, a float of the other width) goes through
    /// `deserialize_any`, out of line.
    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if let [F32, rest @ ..] = self.rest {
            if let Some((bits, rest)) = rest.split_first_chunk() {
                self.rest = rest;
                return visitor.visit_f32(f32::from_bits(u32::from_le_bytes(*bits)));
            }
        }
        self.any_out_of_line(visitor)
    }

    /// As `deserialize_f32`.
    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if let [F64, rest @ ..] = self.rest {
            if let Some((bits, rest)) = rest.split_first_chunk() {
                self.rest = rest;
                return visitor.visit_f64(f64::from_bits(u64::from_le_bytes(*bits)));
            }
        }
        self.any_out_of_line(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.skip()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str tuple tuple_struct map struct
    }

    /// See the encoder's.
    fn is_human_readable(&self) -> bool {
        true
    }
}

/// A unit variant, written as its name.
fn unit_variant(name: &str) -> de::value::BorrowedStrDeserializer<'_, CodecError> {
    de::value::BorrowedStrDeserializer::new(name)
}

/// The elements of a sequence, or the keys and values of a map.
struct Items<'a, 'de> {
    de: &'a mut Decoder<'de>,
    /// Elements, or entries, not read yet.
    left: usize,
}

impl<'de> Items<'_, 'de> {
    fn next<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, CodecError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }
}

impl<'de> SeqAccess<'de> for Items<'_, 'de> {
    type Error = CodecError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, CodecError> {
        self.next(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'de> MapAccess<'de> for Items<'_, 'de> {
    type Error = CodecError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, CodecError> {
        self.next(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, CodecError> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

/// A variant with content: its name, then the content.
struct Variant<'a, 'de> {
    de: &'a mut Decoder<'de>,
}

impl<'de> EnumAccess<'de> for Variant<'_, 'de> {
    type Error = CodecError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), CodecError> {
        let name = seed.deserialize(&mut *self.de)?;
        Ok((name, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_, 'de> {
    type Error = CodecError;

    fn unit_variant(self) -> Result<(), CodecError> {
        de::Deserialize::deserialize(self.de)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, CodecError> {
        seed.deserialize(self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_any(self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_any(self.de, visitor)
    }
}

#[cfg(test)]
mod tests;

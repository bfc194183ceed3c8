//! The fast reader of rt.fastly.com answers: a hand-written scanner for the shape the API
//! sends, straight into a [`Batch`], with the serde parser (`parse.rs`) as its fallback.
//!
//! serde_json's visitors read about 700 MB/s; this reads the usual answer about three times as
//! fast, because it knows the schema: an envelope, a list of records, datacenters, stats objects
//! of non-negative numbers, and map fields of integer keys. It takes no decisions of its own:
//! whatever it does not recognise as the plain, valid form of that shape (a sign, an exponent, an
//! escape, a non-ASCII byte, a null or string where a number belongs, a syntax error, a value
//! the tolerant rules would skip...) makes it give up with [`Unsupported`], and the caller
//! parses the whole body again with serde, which decides. So the tolerance rules (invalid
//! values skipped alone, unknown keys skipped, broken bodies rejected whole, `recorded` read
//! for lost seconds) live in one place, `parse.rs`, and what this reader accepts it turns into
//! exactly the batch the serde parser makes of it: numbers are computed as serde_json computes
//! them (an integer's `u64` as `f64`; a decimal's digits as `u64`, then divided by a power of
//! ten up to 10^22, both exact in `f64`, so the quotient is the one serde_json's division
//! gives). The tests compare both parsers on the fixtures and on mutated bodies.

use std::sync::OnceLock;

use crate::catalog::{FieldKind, Stream, StreamDef, catalog};
use crate::store::Batch;

use super::parse::{AGGREGATE_DC, Mode};

/// The body uses something this reader leaves to the serde parser (or is not valid).
#[derive(Debug, PartialEq, Eq)]
pub struct Unsupported;

type R<T> = Result<T, Unsupported>;

/// The largest integer a float holds exactly (as `parse.rs` checks it).
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Powers of ten as serde_json's table has them (decimal literals, exact up to 10^22).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// `digits` (ASCII digits, few enough not to overflow) appended to `v` in base ten.
#[inline(always)]
fn fold(v: u64, digits: &[u8]) -> u64 {
    digits.iter().fold(v, |v, d| v * 10 + u64::from(d - b'0'))
}

/// How many of the eight bytes of `w` (first byte lowest) are ASCII digits before the first
/// that is not one (8: all are).
#[inline(always)]
fn digit_run(w: u64) -> usize {
    // Digits become 0..=9. A byte is flagged when it is 10 or more: adding 0x76 sets its high
    // bit, or it had it already. A carry out of a flagged byte can only flag bytes above the
    // first flagged one, which the count does not look at.
    let x = w ^ 0x3030_3030_3030_3030;
    let flagged = (x.wrapping_add(0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080;
    (flagged.trailing_zeros() / 8) as usize
}

/// The value of eight ASCII digits in `w` (first digit in the lowest byte; zero bytes in
/// front, that is below, count as leading zeros): pairs, then quads, then the whole.
#[inline(always)]
fn eight_digits(w: u64) -> u64 {
    let v = w & 0x0F0F_0F0F_0F0F_0F0F;
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    (v.wrapping_mul(10000) + (v >> 32)) & 0xFFFF_FFFF
}

/// A field's key as the API writes it before the value, `name":` (after the opening quote),
/// in little-endian words, and what the value is: what the guesses compare the body against.
/// A mismatch, the usual outcome of a guess, shows in the first or the last eight bytes,
/// both held here, so it costs two loads of the body and nothing fetched from elsewhere (a
/// pattern shorter than eight bytes is one masked word). Only a hit reads the middle words.
struct Key {
    first: u64,
    mask: u64,
    /// The pattern's last eight bytes (overlapping the words before unless the length is a
    /// multiple of eight); unused up to eight bytes.
    last: u64,
    /// Pattern length in bytes.
    len: u8,
    kind: KeyKind,
    /// The whole words between the first and the last.
    middle: Box<[u64]>,
}

/// What a field's value is, as the scan reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    /// A count (`u64` in the API's field list): a fractional value is left to serde.
    Count,
    /// Any non-negative number.
    Number,
    /// `{"<integer>": count, ...}`.
    Map,
}

impl Key {
    fn new(name: &str, kind: FieldKind, integral: bool) -> Key {
        let mut pattern = name.as_bytes().to_vec();
        pattern.extend_from_slice(b"\":");
        let n = pattern.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            let end = n.min(at + 8);
            w[..end - at].copy_from_slice(&pattern[at..end]);
            u64::from_le_bytes(w)
        };
        let kind = match (kind, integral) {
            (FieldKind::Map, _) => KeyKind::Map,
            (FieldKind::Number, true) => KeyKind::Count,
            (FieldKind::Number, false) => KeyKind::Number,
        };
        Key {
            first: if n < WINDOW { word(0) } else { 1 },
            mask: match n {
                ..8 => u64::MAX >> (8 * (8 - n)),
                8..WINDOW => u64::MAX,
                _ => 0,
            },
            last: if n > 8 { word(n - 8) } else { 0 },
            // A pattern longer than a window is never guessed (no catalog name is): its
            // first word can match no body word under a zero mask.
            len: u8::try_from(n).unwrap_or(u8::MAX),
            kind,
            middle: (8..n.saturating_sub(8)).step_by(8).map(word).collect(),
        }
    }

    /// Whether the window `w` (a key's opening quote and what follows) holds this key's
    /// pattern after the quote. Every load is within the window, so none is bounds-checked
    /// (the offsets are clamped, which changes none of a pattern shorter than the window).
    #[inline(always)]
    fn is_at(&self, w: &[u8; WINDOW]) -> bool {
        let load = |i: usize| {
            let i = i.min(WINDOW - 8);
            u64::from_le_bytes([w[i], w[i + 1], w[i + 2], w[i + 3], w[i + 4], w[i + 5], w[i + 6], w[i + 7]])
        };
        if load(1) & self.mask != self.first {
            return false;
        }
        let n = usize::from(self.len);
        if n <= 8 {
            return true;
        }
        if load(n - 7) != self.last {
            return false;
        }
        self.middle.iter().enumerate().all(|(i, &m)| load(9 + i * 8) == m)
    }
}

/// The key table of `stream`, built from the catalog once.
fn keys(stream: Stream) -> &'static [Key] {
    static KEYS: [OnceLock<Box<[Key]>>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[stream as usize].get_or_init(|| {
        let def = catalog().stream(stream);
        (def.fields.iter().zip(&def.field_kinds).enumerate())
            .map(|(f, (name, kind))| Key::new(name, *kind, def.integral.get(f).copied().unwrap_or(false)))
            .collect()
    })
}

/// The most digits a number's significand (integer and fraction together) may have here; longer
/// ones are left to serde. serde_json reads up to 19 into a `u64`; 18 always fit an `i64`, and
/// x86-64 converts an `i64` to `f64` in one instruction where a `u64` takes a dependent chain
/// of five with a constant from memory (~3 % of the exporter's CPU samples at Scale C fell
/// on that one conversion). The API's counters are far shorter.
const MAX_DIGITS: usize = 18;

/// A significand of at most [`MAX_DIGITS`] digits as `f64`: the same value `sig as f64` is,
/// through `i64` (exact, as `sig` < 10^18 < 2^63).
#[inline(always)]
fn significand(sig: u64) -> f64 {
    debug_assert!(sig < 1_000_000_000_000_000_000);
    sig as i64 as f64
}

/// Bytes a guess compares in one piece: a key's opening quote and its pattern (`name":`), up
/// to 63 bytes (the catalog's longest is 49). A key closer than this to the end of the body is
/// read and looked up instead, which is only slower.
const WINDOW: usize = 64;

/// No field (in `Batch::key_order`).
const NONE: u16 = u16::MAX;

/// How many fields of the learned order are tried before a key is scanned and looked up.
/// The API omits fields that are zero, so the key that comes is often a few places further
/// along the order than the last one: with ~40 % of fields absent, six tries find ~99 %.
const GUESSES: usize = 6;

/// How far along the learned order a looked-up key is searched for before the order is
/// changed (see [`Scan::learn`]).
const LEARN_WALK: usize = 32;

/// Deepest nesting of a skipped value (the schema's own is 7; serde_json allows 128).
const MAX_SKIP_DEPTH: u32 = 32;

/// Parses `body` into `batch` (cleared first) when it is the plain form of an answer;
/// `Unsupported` otherwise (the batch is then left in an unspecified state).
#[inline(never)]
pub fn parse_fast(body: &[u8], stream: Stream, mode: Mode, batch: &mut Batch) -> R<()> {
    batch.clear();
    let def = catalog().stream(stream);
    if batch.key_order.len() != def.fields.len() + 1 {
        batch.key_order = vec![NONE; def.fields.len() + 1];
    }
    let keys = keys(stream);
    let mut s = Scan { b: body, i: 0, def, keys, stream, mode, batch, fraction: false };
    s.envelope()?;
    s.ws();
    if s.i == body.len() { Ok(()) } else { Err(Unsupported) }
}

struct Scan<'a, 'b> {
    b: &'a [u8],
    i: usize,
    def: &'static StreamDef,
    keys: &'static [Key],
    stream: Stream,
    mode: Mode,
    batch: &'b mut Batch,
    /// Whether the last number had a fraction or an exponent.
    fraction: bool,
}

impl<'a> Scan<'a, '_> {
    /// Skips whitespace. The API's answers are compact: one comparison when there is none.
    #[inline(always)]
    fn ws(&mut self) {
        if self.b.get(self.i).is_some_and(|c| *c > b' ') {
            return;
        }
        self.ws_slow();
    }

    #[cold]
    fn ws_slow(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// The next byte that is not whitespace (not consumed).
    #[inline(always)]
    fn peek(&mut self) -> R<u8> {
        self.ws();
        self.b.get(self.i).copied().ok_or(Unsupported)
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// After a member or element: true when another follows (`,`), false at `close`.
    #[inline(always)]
    fn more(&mut self, close: u8) -> R<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Ok(true)
            }
            c if c == close => {
                self.i += 1;
                Ok(false)
            }
            _ => Err(Unsupported),
        }
    }

    /// Opens an object or array; true when it is empty (and already closed).
    #[inline(always)]
    fn open(&mut self, open: u8, close: u8) -> R<bool> {
        self.eat(open)?;
        if self.peek()? == close {
            self.i += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads the container `open … close` here, calling `element` for each element (after the
    /// comma before it): the one loop every object and array of the answer is read with.
    #[inline(always)]
    fn each(&mut self, open: u8, close: u8, mut element: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        if self.open(open, close)? {
            return Ok(());
        }
        loop {
            element(self)?;
            if !self.more(close)? {
                return Ok(());
            }
        }
    }

    /// A string of printable ASCII without escapes, and the `:` after it when it is a key.
    #[inline(always)]
    fn string(&mut self) -> R<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let b = self.b;
        // Eight bytes at a time: stop at the first that is a quote, a backslash, a control
        // character or not ASCII (then decided byte by byte below).
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = b.get(self.i..self.i + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
            let quote = zero(w ^ (ONES * u64::from(b'"')));
            let other = zero(w ^ (ONES * u64::from(b'\\'))) | (w.wrapping_sub(ONES * 0x20) & !w & HIGH) | (w & HIGH);
            if quote | other == 0 {
                self.i += 8;
                continue;
            }
            // The lowest flagged byte is a real one (a false flag only follows a real one).
            let first = (quote | other).trailing_zeros() / 8;
            self.i += first as usize;
            if quote & (0x80 << (first * 8)) == 0 {
                return Err(Unsupported);
            }
            let s = &b[start..self.i];
            self.i += 1;
            return Ok(s);
        }
        loop {
            match b.get(self.i) {
                Some(b'"') => break,
                Some(&c) if (0x20..0x80).contains(&c) && c != b'\\' => self.i += 1,
                _ => return Err(Unsupported),
            }
        }
        let s = &b[start..self.i];
        self.i += 1;
        Ok(s)
    }

    #[inline(always)]
    fn key(&mut self) -> R<&'a [u8]> {
        let k = self.string()?;
        self.eat(b':')?;
        Ok(k)
    }

    /// `null` (consumed: true) or anything else (not consumed: false).
    fn null(&mut self) -> R<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// A run of digits: where it ends. Eight bytes at a time while eight are left.
    #[inline(always)]
    fn run(&mut self) -> usize {
        while let Some(chunk) = self.b.get(self.i..self.i + 8) {
            let len = digit_run(u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])));
            self.i += len;
            if len < 8 {
                return self.i;
            }
        }
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i
    }

    /// Digits of a JSON integer part without sign (`0` or `[1-9][0-9]*`), as `u64`; at most
    /// [`MAX_DIGITS`] of them.
    #[inline(always)]
    fn digits(&mut self) -> R<u64> {
        let start = self.i;
        // Most values are short integers: with eight bytes to look at, find where the digits
        // end and convert them without a loop (a loop's exit is a mispredicted branch on
        // every number of a new length). Eight digits or more take the loop below.
        if let Some(chunk) = self.b.get(start..start + 8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            let len = digit_run(w);
            if len < 8 {
                // Not a number, or a leading zero (which JSON forbids and serde rejects).
                if len == 0 || (len > 1 && chunk[0] == b'0') {
                    return Err(Unsupported);
                }
                self.i = start + len;
                return Ok(eight_digits(w << (8 * (8 - len))));
            }
        }
        match self.b.get(self.i) {
            Some(b'0') => {
                self.i += 1;
                if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    return Err(Unsupported);
                }
                return Ok(0);
            }
            Some(b'1'..=b'9') => {}
            _ => return Err(Unsupported),
        }
        let end = self.run();
        if end - start > MAX_DIGITS {
            return Err(Unsupported);
        }
        Ok(fold(0, &self.b[start..end]))
    }

    /// The usual member value, read in one piece: up to seven digits right here and the `,`
    /// or `}` right after them, both consumed; whether it was `}` comes back with the value.
    /// Anything else (a longer number, a fraction, whitespace, a leading zero) is `None`,
    /// nothing consumed, for [`Scan::value`] and [`Scan::more`] to read as before. Such a
    /// number is an exact integer, so both kinds of field take it as it is.
    #[inline(always)]
    fn short_integer(&mut self) -> Option<(f64, bool)> {
        let w = u64::from_le_bytes(*self.b.get(self.i..)?.first_chunk::<8>()?);
        let len = digit_run(w);
        if len == 0 || len == 8 || (len > 1 && w as u8 == b'0') {
            return None;
        }
        let closed = match (w >> (8 * len)) as u8 {
            b',' => false,
            b'}' => true,
            _ => return None,
        };
        self.i += len + 1;
        Some((significand(eight_digits(w << (8 * (8 - len)))), closed))
    }

    /// A non-negative integer without fraction or exponent (`Timestamp`, `recorded`).
    fn integer(&mut self) -> R<u64> {
        self.ws();
        let v = self.digits()?;
        match self.b.get(self.i) {
            Some(b'.' | b'e' | b'E') => Err(Unsupported),
            _ => Ok(v),
        }
    }

    /// A non-negative number (`12`, `0.25`, `8.1e-05`) whose decimal exponent, fraction
    /// included, is within ±22, as serde_json computes it: the digits as `u64` (no overflow),
    /// then one multiplication or division by an exact power of ten.
    #[inline(always)]
    fn number(&mut self) -> R<f64> {
        self.ws();
        let int_start = self.i;
        let mut sig = self.digits()?;
        let int_len = self.i - int_start;
        let b = self.b;
        let mut exp: i64 = 0;
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            let start = self.i;
            let end = self.run();
            // At most `MAX_DIGITS` in all (see there).
            if end == start || int_len + (end - start) > MAX_DIGITS {
                return Err(Unsupported);
            }
            sig = fold(sig, &b[start..end]);
            exp = -((end - start) as i64);
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            let negative = match b.get(self.i) {
                Some(b'-') => {
                    self.i += 1;
                    true
                }
                Some(b'+') => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let start = self.i;
            let mut e: i64 = 0;
            while let Some(&c) = b.get(self.i) {
                if !c.is_ascii_digit() || self.i - start >= 4 {
                    break;
                }
                e = e * 10 + i64::from(c - b'0');
                self.i += 1;
            }
            if self.i == start || b.get(self.i).is_some_and(u8::is_ascii_digit) {
                return Err(Unsupported);
            }
            exp += if negative { -e } else { e };
        } else if exp == 0 {
            return Ok(significand(sig));
        }
        self.fraction = true;
        match usize::try_from(exp.unsigned_abs()).ok().and_then(|e| POW10.get(e)) {
            Some(pow) if exp >= 0 => Ok(significand(sig) * pow),
            Some(pow) => Ok(significand(sig) / pow),
            None => Err(Unsupported),
        }
    }

    /// A number the tolerant rules accept as it is (see `parse.rs`'s `NumberSeed`); anything
    /// they would skip is left to them.
    #[inline(always)]
    fn value(&mut self, integral: bool) -> R<f64> {
        self.fraction = false;
        let v = self.number()?;
        // Only a number written with a fraction or an exponent can have a fractional part.
        if v > MAX_EXACT || (integral && self.fraction && v.fract() != 0.0) {
            return Err(Unsupported);
        }
        Ok(v)
    }

    /// Any valid JSON value, skipped (strictly: what serde_json would reject, this rejects).
    fn skip(&mut self, depth: u32) -> R<()> {
        if depth > MAX_SKIP_DEPTH {
            return Err(Unsupported);
        }
        match self.peek()? {
            b'{' => {
                if !self.open(b'{', b'}')? {
                    loop {
                        self.key()?;
                        // Most skipped members are numbers (the other mode's stats): read
                        // here, without a call and a dispatch for each, most of them in one
                        // piece with the separator after them.
                        if let Some((_, closed)) = self.short_integer() {
                            if closed {
                                break;
                            }
                            continue;
                        }
                        if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                            self.skip_number()?;
                        } else {
                            self.skip(depth + 1)?;
                        }
                        if !self.more(b'}')? {
                            break;
                        }
                    }
                }
            }
            b'[' => {
                if !self.open(b'[', b']')? {
                    loop {
                        self.skip(depth + 1)?;
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
            }
            b'"' => {
                self.string()?;
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => self.skip_number()?,
        }
        Ok(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, not evaluated (as serde_json skips).
    #[inline(always)]
    fn skip_number(&mut self) -> R<()> {
        let b = self.b;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.run();
            }
            _ => return Err(Unsupported),
        }
        let run = |s: &mut Self| -> R<()> {
            let start = s.i;
            if s.run() == start { Err(Unsupported) } else { Ok(()) }
        };
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            run(self)?;
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            run(self)?;
        }
        Ok(())
    }

    /// `{"Data": [...], "Timestamp": n, "Error": "...", ...}`.
    fn envelope(&mut self) -> R<()> {
        self.each(b'{', b'}', |s| {
            match s.key()? {
                b"Data" => {
                    if !s.null()? {
                        s.records()?;
                    }
                }
                b"Timestamp" => s.batch.timestamp = if s.null()? { None } else { Some(s.integer()?) },
                b"Error" | b"error" => {
                    s.batch.error = if s.null()? {
                        None
                    } else {
                        // Printable ASCII only (see `string`): valid UTF-8.
                        Some(String::from_utf8_lossy(s.string()?).into_owned())
                    }
                }
                _ => s.skip(1)?,
            }
            Ok(())
        })
    }

    /// `[{"datacenter": {...}, "aggregated": {...}, "recorded": n}, ...]`.
    fn records(&mut self) -> R<()> {
        self.each(b'[', b']', Self::record)
    }

    fn record(&mut self) -> R<()> {
        self.each(b'{', b'}', |s| {
            match (s.key()?, s.mode) {
                (b"datacenter", Mode::PerDatacenter) => {
                    if !s.null()? {
                        s.datacenters()?;
                    }
                }
                (b"aggregated", Mode::Aggregate) => {
                    let dc = s.batch.add_name(AGGREGATE_DC);
                    s.block(dc)?;
                }
                (b"recorded", _) => {
                    let second = s.integer()?;
                    s.batch.note_recorded(second);
                }
                _ => s.skip(3)?,
            }
            Ok(())
        })
    }

    /// Datacenter code → its block.
    fn datacenters(&mut self) -> R<()> {
        self.each(b'{', b'}', |s| {
            let name = s.key()?;
            // Printable ASCII (see `string`).
            let dc = s.batch.add_name(std::str::from_utf8(name).map_err(|_| Unsupported)?);
            s.block(dc)
        })
    }

    /// One datacenter's (or the aggregate's) block: its fields (real-time), or its origins or
    /// domains, each with their fields.
    fn block(&mut self, dc: std::ops::Range<u32>) -> R<()> {
        if self.stream == Stream::Realtime {
            return self.fields(dc, 0..0);
        }
        self.each(b'{', b'}', |s| {
            let name = s.key()?;
            let entity = s.batch.add_name(std::str::from_utf8(name).map_err(|_| Unsupported)?);
            s.fields(dc.clone(), entity)
        })
    }

    /// One stats object: each key looked up in the catalog, its value added to the record.
    #[inline(never)]
    fn fields(&mut self, dc: std::ops::Range<u32>, entity: std::ops::Range<u32>) -> R<()> {
        // Not an object: the tolerant rules skip it, and they decide.
        if self.peek()? != b'{' {
            return Err(Unsupported);
        }
        self.batch.begin_record(dc, entity);
        let def = self.def;
        // The last known field of this object (`fields.len()`: none yet, its first key).
        let mut last = def.fields.len();
        if !self.open(b'{', b'}')? {
            loop {
                let field = match self.guess(last) {
                    Some(hit) => Some(hit),
                    None => {
                        let key = self.key()?;
                        let f = def.field_bytes(key);
                        if let Some(f) = f {
                            self.learn(last, f);
                        }
                        f.and_then(|f| Some((f, self.keys.get(usize::from(f))?.kind)))
                    }
                };
                if let Some((f, _)) = field {
                    last = usize::from(f);
                }
                match field {
                    None => self.skip(6)?,
                    Some((f, KeyKind::Map)) => self.counts(f)?,
                    Some((f, kind)) => {
                        if let Some((v, closed)) = self.short_integer() {
                            self.batch.push(f, v);
                            if closed {
                                break;
                            }
                            continue;
                        }
                        let v = self.value(kind == KeyKind::Count)?;
                        self.batch.push(f, v);
                    }
                }
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        self.batch.end_record();
        Ok(())
    }

    /// The key that comes next when it is one of the [`GUESSES`] fields that followed `last`
    /// before (in the order learned in `Batch::key_order`), written plainly (`"name":` right
    /// here): consumed, and its field and kind returned. A catalog name is printable ASCII
    /// without escapes, so bytes equal to it are the key the scan and lookup would have found.
    #[inline(always)]
    fn guess(&mut self, last: usize) -> Option<(u16, KeyKind)> {
        let w: &[u8; WINDOW] = self.b.get(self.i..)?.first_chunk()?;
        if w[0] != b'"' {
            return None;
        }
        let order = &self.batch.key_order;
        let mut next = *order.get(last)?;
        for _ in 0..GUESSES {
            let key = self.keys.get(usize::from(next))?;
            if key.is_at(w) {
                self.i += 1 + usize::from(key.len);
                return Some((next, key.kind));
            }
            next = *order.get(usize::from(next))?;
        }
        None
    }

    /// Learns that `f` came right after `last`, unless `f` is further along the learned order
    /// already: then the fields between were only absent this time (zeros are omitted), and
    /// the nearer successor is the one to keep. So the order converges on the API's own, the
    /// nearest successor of each field ever seen, instead of flipping to whichever field
    /// happened to follow last.
    fn learn(&mut self, last: usize, f: u16) {
        let order = &mut self.batch.key_order;
        let mut next = order[last];
        for _ in 0..LEARN_WALK {
            if next == f {
                return;
            }
            match order.get(usize::from(next)) {
                Some(&n) => next = n,
                None => break,
            }
        }
        order[last] = f;
    }

    /// `{"<integer>": count, ...}` of a map field.
    fn counts(&mut self, field: u16) -> R<()> {
        // Not an object: the tolerant rules skip the field, and they decide.
        if self.peek()? != b'{' {
            return Err(Unsupported);
        }
        self.each(b'{', b'}', |s| {
            let key = s.key()?;
            // What `str::parse::<i64>` reads exactly: up to 18 digits, leading zeros allowed.
            if key.is_empty() || key.len() > 18 || !key.iter().all(u8::is_ascii_digit) {
                return Err(Unsupported);
            }
            let k = key.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
            let c = s.value(true)?;
            s.batch.push_keyed(field, k as f64, c);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::realtime::parse::parse_serde;

    const FIXTURES: [(Stream, &[u8]); 3] = [
        (Stream::Realtime, include_bytes!("../../../tests/fixtures/realtime.json")),
        (Stream::Origin, include_bytes!("../../../tests/fixtures/origins.json")),
        (Stream::Domain, include_bytes!("../../../tests/fixtures/domains.json")),
    ];
    const MODES: [Mode; 2] = [Mode::PerDatacenter, Mode::Aggregate];

    /// Everything a batch carries, values by their bits (so `-0.0`, NaN and one ulp all count).
    fn content(b: &Batch) -> String {
        let mut out = format!(
            "ts {:?} error {:?} recorded {:?} skipped {:?}\n",
            b.timestamp, b.error, b.first_recorded, b.skipped
        );
        for r in b.records() {
            out.push_str(&format!("{:?}/{:?}:", r.dc, r.entity));
            for e in r.entries {
                out.push_str(&format!(" {}:{:x}:{:x}", e.field, e.key.to_bits(), e.value.to_bits()));
            }
            out.push('\n');
        }
        out
    }

    /// Runs both parsers on `body`; when the fast reader takes it, serde must agree exactly.
    /// Returns whether the fast reader took it.
    fn same(body: &[u8], stream: Stream, mode: Mode) -> bool {
        let (mut fast, mut slow) = (Batch::default(), Batch::default());
        let took = parse_fast(body, stream, mode, &mut fast).is_ok();
        let reference = parse_serde(body, stream, mode, &mut slow);
        if took {
            assert!(
                reference.is_ok(),
                "fast reader accepted what serde rejects ({:?}): {}",
                reference.err().map(|e| e.to_string()),
                String::from_utf8_lossy(body)
            );
            assert_eq!(content(&fast), content(&slow), "{stream:?} {mode:?}: {}", String::from_utf8_lossy(body));
        }
        // And what callers get is serde's verdict either way.
        let mut combined = Batch::default();
        let got = parse_response(body, stream, mode, &mut combined);
        assert_eq!(got.is_ok(), reference.is_ok());
        assert_eq!(content(&combined), content(&slow));
        took
    }

    use crate::upstream::realtime::parse::parse_response;

    fn generated() -> Vec<(Stream, Vec<u8>)> {
        let mut out = Vec::new();
        for (ours, theirs) in [
            (Stream::Realtime, fake_fastly::Stream::Realtime),
            (Stream::Origin, fake_fastly::Stream::Origins),
            (Stream::Domain, fake_fastly::Stream::Domains),
        ] {
            let spec = fake_fastly::GenSpec { datacenters: 4, entities: 2, seed: 7 };
            out.extend(fake_fastly::sample_bodies(theirs, &spec).into_iter().take(3).map(|b| (ours, b)));
        }
        out
    }

    #[test]
    fn fixtures_and_generated_answers_take_the_fast_path_with_identical_batches() {
        let mut bodies: Vec<(Stream, Vec<u8>)> = FIXTURES.iter().map(|(s, b)| (*s, b.to_vec())).collect();
        bodies.extend(generated());
        for (stream, body) in &bodies {
            for mode in MODES {
                assert!(same(body, *stream, mode), "{stream:?} {mode:?} left to serde");
            }
        }
    }

    #[test]
    fn numbers_are_the_ones_serde_json_computes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut taken = 0;
        for i in 0..20_000 {
            let int_digits = 1 + rng.below(if i % 4 == 0 { 21 } else { 12 }) as usize;
            let frac_digits = rng.below(if i % 4 == 1 { 25 } else { 10 }) as usize;
            let mut n = String::new();
            for d in 0..int_digits {
                let lo = if d == 0 && int_digits > 1 { 1 } else { 0 };
                n.push(char::from(b'0' + (lo + rng.below(10 - lo)) as u8));
            }
            if frac_digits > 0 || i % 3 == 0 {
                n.push('.');
                for _ in 0..frac_digits {
                    n.push(char::from(b'0' + rng.below(10) as u8));
                }
            }
            if i % 2 == 0 {
                let e = rng.below(30) as i64 - 15;
                n.push_str(&format!("{}{}{e}", ["e", "E"][i % 3 % 2], if e >= 0 && i % 5 == 0 { "+" } else { "" }));
            }
            // hits_time takes any non-negative number, requests only whole ones.
            let body =
                format!(r#"{{"Data":[{{"datacenter":{{"X":{{"hits_time":{n},"requests":{n}}}}}}}],"Timestamp":1}}"#);
            taken += usize::from(same(body.as_bytes(), Stream::Realtime, Mode::PerDatacenter));
            let body = format!(r#"{{"Data":[{{"datacenter":{{"X":{{"hits_time":{n}}}}}}}],"Timestamp":1}}"#);
            taken += usize::from(same(body.as_bytes(), Stream::Realtime, Mode::PerDatacenter));
        }
        assert!(taken > 15_000, "the fast path took only {taken} of 40,000");
    }

    #[test]
    fn hostile_bodies_are_left_to_serde_or_read_identically() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"null",
            b"[]",
            b"{}",
            b"{} x",
            b"{},",
            b"\xef\xbb\xbf{}",
            br#"{"Data":null}"#,
            br#"{"Data":[]}"#,
            br#"{"Data":[],}"#,
            br#"{"Data":[1]}"#,
            br#"{"Data":[null]}"#,
            br#"{"Data":{"datacenter":5}}"#,
            br#"{"Data":[{"datacenter":null}]}"#,
            br#"{"Data":[{"datacenter":{"X":null}}]}"#,
            br#"{"Data":[{"datacenter":{"X":7}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":1,}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":01}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":1.}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":.5}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":-0}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":1e2}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":18446744073709551615}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":18446744073709551616}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":9007199254740993}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":9007199254740992}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"hits_time":0.1000000000000000000001}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests":5.0,"hits_time":5.00}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"requests" :1 , "hits":2}}}]}"#,
            b"{\"Data\":[{\"datacenter\":{\"X\":{\"requests\":\t1\r\n}}}]}",
            b"{\"Data\":[{\"datacenter\":{\"X\":{\"requests\":\x0c1}}}]}",
            br#"{"Data":[{"datacenter":{"X\u0041":{"requests":1}}}]}"#,
            b"{\"Data\":[{\"datacenter\":{\"X\xc3\xa9\":{\"requests\":1}}}]}",
            b"{\"Data\":[{\"datacenter\":{\"X\xff\":{\"requests\":1}}}]}",
            b"{\"Data\":[{\"datacenter\":{\"X\x01\":{\"requests\":1}}}]}",
            br#"{"Data":[{"datacenter":{"X":{"unknown":{"a":[1,2,{"b":null}],"c":"d"},"requests":1}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"unknown":[1,2,}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"unknown":-1.5e-3,"requests":1}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"unknown":-,"requests":1}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"unknown":1e,"requests":1}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"unknown":tru,"requests":1}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":{"10":1,"010":2,"x":3}}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":{"10":1,"20":2}}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":{"10":1.5}}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":null}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":{}}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":{"999999999999999999":1}}}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"miss_histogram":{"9999999999999999999":1}}}}]}"#,
            br#"{"Data":[{"recorded":5,"recorded":3,"datacenter":{"X":{"requests":1}}}],"Timestamp":9,"Timestamp":10}"#,
            br#"{"Data":[{"recorded":-5}],"Timestamp":9}"#,
            br#"{"Data":[{"recorded":5.0}],"Timestamp":9}"#,
            br#"{"Data":[],"Timestamp":9.0}"#,
            br#"{"Data":[],"Timestamp":-9}"#,
            br#"{"Data":[],"Timestamp":null,"Error":null}"#,
            br#"{"Data":[],"Timestamp":1,"Error":"No data available, please retry"}"#,
            br#"{"Data":[],"Timestamp":1,"error":"a\"b"}"#,
            br#"{"Data":[],"Timestamp":1,"Error":5}"#,
            br#"{"Data":[],"Data":[{"datacenter":{"X":{"requests":1}}}]}"#,
            br#"{"Data":[{"aggregated":{"requests":1},"datacenter":{"X":{"requests":2}}}]}"#,
            br#"{"Data":[{"aggregated":null}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"o":{"responses":1}},"Y":5}}]}"#,
            br#"{"Data":[{"datacenter":{"X":{"o":{"responses":1},"p":null}}}]}"#,
            br#"{"Data":[{"aggregated":{"o":{"responses":1}}}]}"#,
        ];
        for body in cases {
            for (stream, _) in FIXTURES {
                for mode in MODES {
                    same(body, stream, mode);
                }
            }
        }
        // Deep nesting in a skipped value: serde_json's limit is 128 levels.
        for depth in [20, 40, 126, 127, 128, 200] {
            let body = format!(r#"{{"x":{}{},"Data":[]}}"#, "[".repeat(depth), "]".repeat(depth));
            same(body.as_bytes(), Stream::Realtime, Mode::PerDatacenter);
        }
    }

    /// Mutated answers: bytes changed, dropped or inserted, tokens spliced in, bodies cut.
    /// Whatever the fast reader still takes, it must read exactly as serde does.
    #[test]
    fn mutated_bodies_are_read_identically_or_left_to_serde() {
        const TOKENS: &[&str] = &[
            "-1",
            "1.5",
            "0.25",
            "5.0",
            "1e3",
            "1E-2",
            "null",
            "true",
            "false",
            "\"x\"",
            "\"\\u0041\"",
            "{}",
            "[]",
            "[1,{}]",
            "1e400",
            "00",
            "01",
            "-0",
            "0.",
            ".5",
            "18446744073709551616",
            "9007199254740993",
            "0.1234567890123456789012",
            "0.12345678901234567890123",
            ",",
            ":",
            "}",
            "]",
            "{",
            "[",
            "\"",
            "\\",
            " ",
            "\t",
            "\u{e9}",
            "{\"a\":1}",
        ];
        const BYTES: &[u8] = b"-.eE09\"\\{}[],: nx\x00\x1f\x7f\x80\xff";
        let mut bodies: Vec<(Stream, Vec<u8>)> = FIXTURES.iter().map(|(s, b)| (*s, b.to_vec())).collect();
        bodies.extend(generated());
        let mut rng = Rng(42);
        let (mut taken, mut total) = (0usize, 0usize);
        for (stream, body) in &bodies {
            for _ in 0..600 {
                let mut m = body.clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(m.len() as u64 + 1) as usize;
                    match rng.below(6) {
                        0 if at < m.len() => m[at] = BYTES[rng.below(BYTES.len() as u64) as usize],
                        1 if at < m.len() => {
                            let n = (1 + rng.below(8) as usize).min(m.len() - at);
                            m.drain(at..at + n);
                        }
                        2 => {
                            let t = TOKENS[rng.below(TOKENS.len() as u64) as usize];
                            m.splice(at..at, t.bytes());
                        }
                        3 => {
                            // Replace a number with a token (keeps most bodies valid).
                            if let Some(start) = (at..m.len()).find(|i| m[*i].is_ascii_digit()) {
                                let end = (start..m.len()).find(|i| !m[*i].is_ascii_digit()).unwrap_or(m.len());
                                let t = TOKENS[rng.below(22) as usize];
                                m.splice(start..end, t.bytes());
                            }
                        }
                        4 => m.truncate(at),
                        _ => {
                            // A decimal where an integer was: the float path.
                            if let Some(start) = (at..m.len()).find(|i| m[*i].is_ascii_digit()) {
                                let frac: String =
                                    (0..1 + rng.below(24)).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
                                let end = (start..m.len()).find(|i| !m[*i].is_ascii_digit()).unwrap_or(m.len());
                                m.splice(end..end, format!(".{frac}").bytes());
                            }
                        }
                    }
                }
                for mode in MODES {
                    total += 1;
                    taken += usize::from(same(&m, *stream, mode));
                }
            }
        }
        // Many mutations keep the body valid: the comparison is exercised, not only the bail-out.
        assert!(taken * 5 > total, "the fast path took only {taken} of {total} mutated bodies");
    }

    /// Every key of every stream, of every length (one masked word, whole words, an
    /// overlapping last word): found where it is written, its length consumed, and missed when
    /// any one byte of it differs or the body ends within the eight bytes a guess loads.
    #[test]
    fn a_key_pattern_matches_its_own_bytes_only() {
        let mut lengths = std::collections::BTreeSet::new();
        for stream in [Stream::Realtime, Stream::Origin, Stream::Domain] {
            let def = catalog().stream(stream);
            for (f, key) in keys(stream).iter().enumerate() {
                let pattern = format!("{}\":", def.fields[f]);
                let n = pattern.len();
                lengths.insert(n);
                assert_eq!(usize::from(key.len), n, "{pattern}");
                let mut body = format!("\"{pattern}12345678}}").into_bytes();
                body.resize(WINDOW, b' ');
                let window = |b: &[u8]| -> [u8; WINDOW] { b.try_into().unwrap() };
                assert!(key.is_at(&window(&body)), "{pattern}");
                for i in 0..n {
                    let mut wrong = body.clone();
                    wrong[1 + i] ^= 0x01;
                    assert!(!key.is_at(&window(&wrong)), "{pattern} with byte {i} changed");
                }
            }
        }
        // The shapes the table distinguishes all occur in the catalog.
        assert!(lengths.iter().any(|n| *n < 8) && lengths.iter().any(|n| n % 8 == 0 && *n > 8), "{lengths:?}");
        assert!(lengths.iter().any(|n| n % 8 != 0 && *n > 16), "{lengths:?}");
    }

    #[test]
    fn keys_closer_than_a_window_to_the_end_are_read_after_learned_ones() {
        // The second answer is read with the order learned from the first, so its keys are
        // guessed until fewer than `WINDOW` bytes are left, and read and looked up after.
        let body = br#"{"Data":[{"recorded":1,"aggregated":{"requests":1,"hits":2,"miss":3,"pass":4,"errors":5,"synth":6}}],"Timestamp":5}"#;
        let (mut fast, mut slow) = (Batch::default(), Batch::default());
        for _ in 0..2 {
            parse_fast(body, Stream::Realtime, Mode::Aggregate, &mut fast).unwrap();
        }
        parse_serde(body, Stream::Realtime, Mode::Aggregate, &mut slow).unwrap();
        assert_eq!(content(&fast), content(&slow));
        assert!(content(&fast).contains("6"), "{}", content(&fast));
        let from_end = |key: &[u8]| body.len() - body.windows(key.len()).position(|w| w == key).unwrap();
        assert!(from_end(b"\"hits\":") >= WINDOW && from_end(b"\"miss\":") < WINDOW);
    }

    #[test]
    fn the_eight_byte_digit_reader_agrees_with_the_byte_loop() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        const BYTES: &[u8] = b"0123456789012345678901234567890123456789.eE-+,}\x00\x2f\x3a\xff\xb0 ";
        for _ in 0..200_000 {
            let mut chunk = [0u8; 8];
            for c in &mut chunk {
                *c = BYTES[rng.below(BYTES.len() as u64) as usize];
            }
            let w = u64::from_le_bytes(chunk);
            let len = chunk.iter().take_while(|c| c.is_ascii_digit()).count();
            assert_eq!(digit_run(w), len, "{chunk:?}");
            if len == 0 {
                continue;
            }
            if len < 8 {
                assert_eq!(eight_digits(w << (8 * (8 - len))), fold(0, &chunk[..len]), "{chunk:?}");
            } else {
                assert_eq!(eight_digits(w), fold(0, &chunk), "{chunk:?}");
            }
        }
    }

    /// xorshift64: reproducible, dependency-free.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }
}

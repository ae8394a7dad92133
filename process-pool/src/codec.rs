//! How arguments, results and task state are encoded between processes.
//!
//! One function pair, so the codec can change in one place. The choice is measured: see the
//! crate's `README.md`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Appends the encoding of `value` to `out`. On failure `out` is left as it was.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let before = out.len();
    postcard::serialize_with_flavor(value, Append(out)).map_err(|e| {
        out.truncate(before);
        e.to_string()
    })
}

/// A postcard output that appends to a caller's buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes a value that must span all of `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} bytes left over after the value", rest.len())),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let mut out = vec![9];
        encode_into(&(1u64, "two".to_string()), &mut out).unwrap();
        assert_eq!(out[0], 9, "encoding appends");
        let back: (u64, String) = decode(&out[1..]).unwrap();
        assert_eq!(back, (1, "two".to_string()));
        assert!(decode::<u8>(&[1, 2]).is_err());
        assert!(decode::<String>(&[5, b'a']).is_err());
    }
}

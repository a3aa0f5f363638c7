//! Minimal `.npy` (NumPy format 1.0–3.0) reading and writing of float arrays.
//!
//! Reads little-endian `f2`/`f4`/`f8` C-order arrays into f32; writes `<f4`. Every size in the
//! header is checked against the bytes actually present before anything is allocated.

use crate::error::{Error, Result};
use crate::io::floats::Stored;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// First bytes of every `.npy` file.
pub const MAGIC: &[u8] = b"\x93NUMPY";
/// Header text longer than this is refused (NumPy itself writes well under 1 KiB).
const MAX_HEADER: usize = 1 << 16;

/// A float array read from or written to `.npy`.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f32>,
}

impl core::fmt::Display for NpyArray {
    /// A one-line summary: shape, min, max, mean.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (lo, hi) = self.data.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let mean = self.data.iter().map(|&v| v as f64).sum::<f64>() / self.data.len().max(1) as f64;
        write!(f, "npy float array, shape {:?}, min {lo}, max {hi}, mean {mean}", self.shape)
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Npy(reason.into())
}

/// Parses `.npy` bytes.
pub fn parse(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    if header_len > MAX_HEADER || start + header_len > bytes.len() {
        return Err(bad(format!("header of {header_len} bytes does not fit the file")));
    }
    let header =
        core::str::from_utf8(&bytes[start..start + header_len]).map_err(|_| bad("header is not valid text"))?;
    let descr = dict_value(header, "descr")?;
    let stored = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f2" => Stored::F16,
        "<f4" => Stored::F32,
        "<f8" => Stored::F64,
        other => {
            return Err(bad(format!("unsupported dtype {other} (need little-endian f2, f4 or f8)")));
        }
    };
    if dict_value(header, "fortran_order")?.trim() != "False" {
        return Err(bad("Fortran-order arrays are not supported"));
    }
    let shape = parse_shape(dict_value(header, "shape")?)?;
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("shape overflows"))?;
    let payload = &bytes[start + header_len..];
    if count.checked_mul(stored.width()) != Some(payload.len()) {
        return Err(bad(format!("shape {shape:?} needs {count} values but {} bytes follow the header", payload.len())));
    }
    Ok(NpyArray { shape, data: stored.decode(payload) })
}

/// The text after `'key':` up to the next top-level comma or closing brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let pattern = format!("'{key}':");
    let at = header.find(&pattern).ok_or_else(|| bad(format!("header lacks '{key}'")))?;
    let rest = header[at + pattern.len()..].trim_start();
    let end = if rest.starts_with('(') { rest.find(')').map(|i| i + 1) } else { rest.find([',', '}']) };
    end.map(|e| &rest[..e]).ok_or_else(|| bad(format!("unterminated '{key}'")))
}

fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text.trim().strip_prefix('(').and_then(|t| t.strip_suffix(')')).ok_or_else(|| bad("bad shape"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(format!("bad shape entry `{s}`"))))
        .collect()
}

/// Serialises a C-order little-endian f32 array (format 1.0).
pub fn to_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(bad(format!("{} values for shape {shape:?}", data.len())));
    }
    let dims: Vec<String> = shape.iter().map(|d| format!("{d}")).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so that the data starts on a 64-byte boundary; the header ends with a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    Ok(out)
}

/// Reads a `.npy` file.
#[cfg(feature = "std")]
pub fn read(path: &std::path::Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|e| Error::Npy(format!("{}: {e}", path.display())))
}

/// Writes a `.npy` file.
#[cfg(feature = "std")]
pub fn write(path: &std::path::Path, shape: &[usize], data: &[f32]) -> Result<()> {
    std::fs::write(path, to_bytes(shape, data)?).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip() {
        let bytes = to_bytes(&[2, 1, 3], &[1.0, -2.0, 3.5, 0.0, 1e-8, 7.0]).unwrap();
        assert_eq!(bytes.len() % 64, 6 * 4);
        let a = parse(&bytes).unwrap();
        assert_eq!(a, NpyArray { shape: vec![2, 1, 3], data: vec![1.0, -2.0, 3.5, 0.0, 1e-8, 7.0] });
        assert_eq!(parse(&to_bytes(&[3], &[1.0, 2.0, 3.0]).unwrap()).unwrap().shape, vec![3]);
    }

    fn with_header(header: &str, payload: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn parses_numpy_written_header_and_f8() {
        let payload: Vec<u8> = [0.25f64, -4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }    \n", &payload);
        assert_eq!(parse(&bytes).unwrap().data, vec![0.25, -4.0]);
    }

    #[test]
    fn damaged_files_are_errors() {
        let good = to_bytes(&[4], &[1.0; 4]).unwrap();
        for cut in [0, 5, 9, 20, good.len() - 1] {
            assert!(matches!(parse(&good[..cut]), Err(Error::Npy(_))), "cut at {cut}");
        }
        let cases = [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4000000000000, 4000000000000), }",
            "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }",
            "{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }",
            "{'descr': '<f4', 'fortran_order': True, 'shape': (4,), }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4, x), }",
            "{'descr': '<f4', 'fortran_order': False}",
        ];
        for header in cases {
            assert!(matches!(parse(&with_header(header, &[0; 16])), Err(Error::Npy(_))), "{header}");
        }
    }
}

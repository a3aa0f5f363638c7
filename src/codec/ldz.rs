//! The `.ldz` container (spec: `docs/ldz-format.md`): a fixed header, per-channel quantisation
//! and entropy-model parameters, the ANS-coded latent and a CRC-32 of everything before it.
//!
//! Parsing checks every field against the file size and fixed limits before anything is
//! allocated, so damaged or hostile files end in [`Error::Ldz`], never a panic.

use super::tiling::{MAX_PIXELS, latent_size};
use crate::error::{Error, Result};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use half::f16;

/// First bytes of every `.ldz` file.
pub const MAGIC: [u8; 4] = [0x89, b'L', b'D', b'Z'];
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// Largest number of quantisation levels of one channel.
pub const MAX_LEVELS: u32 = 4096;
/// Entropy-model contexts per channel (see [`context`]).
pub const CONTEXTS: usize = 3;

const FIXED_HEADER: usize = 4 + 1 + 1 + 8 + 4 + 4 + 2 + 2 + 2 + 2 + 1;
const PER_CHANNEL: usize = 2 + 2 + 2 + 2 + 2 * CONTEXTS;
const MAX_CHANNELS: usize = 1024;

/// Quantisation of one latent channel: `value = offset + step · symbol`, `symbol ∈ [lo, hi]`,
/// coded with a discretised Laplace of scale `scales[ctx]` (in steps) per context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelCoding {
    /// Value of symbol 0.
    pub offset: f16,
    /// Quantisation step.
    pub step: f16,
    /// Smallest symbol.
    pub lo: i16,
    /// Largest symbol.
    pub hi: i16,
    /// Laplace scale of each context, in steps.
    pub scales: [f16; CONTEXTS],
}

/// Everything in a `.ldz` file but the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// [`super::fingerprint`] of the VMAE weights that made the latent.
    pub fingerprint: u64,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// VMAE stride (pixels per latent cell).
    pub patch: u16,
    /// Side of the VMAE's native latent grid (one tile).
    pub tile: u16,
    /// Overlap of neighbouring tiles, in latent cells.
    pub overlap: u16,
    /// The quality setting used (informational).
    pub quality: u8,
    /// Quantisation and entropy model of each latent channel.
    pub channels: Vec<ChannelCoding>,
}

impl Header {
    /// Latent grid (rows, columns): the image padded up to whole cells and at least one tile.
    pub fn latent_size(&self) -> (usize, usize) {
        let (p, t) = (self.patch as usize, self.tile as usize);
        latent_size(p, t, self.width as usize, self.height as usize)
    }

    fn check(&self) -> core::result::Result<(), String> {
        let pixels = self.width as u64 * self.height as u64;
        if pixels == 0 || pixels > MAX_PIXELS {
            return Err(format!("image size {}x{} is empty or above {MAX_PIXELS} pixels", self.width, self.height));
        }
        if self.patch == 0 || self.tile == 0 || self.overlap >= self.tile {
            return Err(format!(
                "tiling patch {} tile {} overlap {} is inconsistent",
                self.patch, self.tile, self.overlap
            ));
        }
        if self.channels.is_empty() || self.channels.len() > MAX_CHANNELS {
            return Err(format!("{} latent channels", self.channels.len()));
        }
        let (rows, cols) = self.latent_size();
        if (rows * cols * self.channels.len()) as u64 > MAX_PIXELS {
            return Err(format!("latent of {}x{rows}x{cols} values is too large", self.channels.len()));
        }
        for (i, c) in self.channels.iter().enumerate() {
            let positive = |v: f16| v.to_f32().is_finite() && v.to_f32() > 0.0;
            if !c.offset.is_finite() || !positive(c.step) || !c.scales.iter().all(|&s| positive(s)) {
                return Err(format!("channel {i}: offset, step or entropy scales not finite and positive"));
            }
            if c.lo > c.hi || (c.hi as i32 - c.lo as i32) as u32 >= MAX_LEVELS {
                return Err(format!(
                    "channel {i}: symbol range {}..={} is empty or over {MAX_LEVELS} levels",
                    c.lo, c.hi
                ));
            }
        }
        Ok(())
    }
}

/// A parsed `.ldz` file.
#[derive(Debug, Clone, PartialEq)]
pub struct LdzFile {
    /// Everything but the payload.
    pub header: Header,
    /// ANS-coded symbols (see [`crate::codec`]).
    pub payload: Vec<u32>,
}

impl LdzFile {
    /// Size of the serialised file in bytes.
    pub fn byte_len(&self) -> usize {
        FIXED_HEADER + PER_CHANNEL * self.header.channels.len() + 4 + 4 * self.payload.len() + 4
    }
}

impl fmt::Display for LdzFile {
    /// What `ldmae info` prints: size, quality, weights, latent, tiling, bit rate, channel coding.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        let (rows, cols) = h.latent_size();
        writeln!(f, "ldz image, format version {VERSION}, {}x{} pixels, quality {}", h.width, h.height, h.quality)?;
        writeln!(f, "VMAE weights fingerprint {:016x}", h.fingerprint)?;
        writeln!(
            f,
            "latent {}x{rows}x{cols}, stride {}, tiles of {} cells overlapping by {}",
            h.channels.len(),
            h.patch,
            h.tile,
            h.overlap
        )?;
        let bytes = self.byte_len();
        let bpp = bytes as f64 * 8.0 / (h.width as f64 * h.height as f64);
        write!(f, "{bytes} bytes, {bpp:.3} bits per pixel")?;
        for (i, c) in h.channels.iter().enumerate() {
            write!(
                f,
                "\n  channel {i:2}: offset {:+.4} step {:.4} symbols {}..={} scales {:?}",
                c.offset,
                c.step,
                c.lo,
                c.hi,
                c.scales.map(f32::from)
            )?;
        }
        Ok(())
    }
}

/// Entropy-model context of a symbol from its left and upper neighbours (0 outside the grid).
pub fn context(left: i32, up: i32) -> usize {
    match left.unsigned_abs() + up.unsigned_abs() {
        0 => 0,
        1..=2 => 1,
        _ => 2,
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Ldz(reason.into())
}

/// Little-endian reader over a byte slice that reports truncation as an error.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| invalid(format!("truncated at byte {} while reading {what}", self.pos)))?;
        let out = self.bytes[self.pos..end].try_into().map_err(|_| invalid("internal slice length"))?;
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(what)?))
    }
    fn i16(&mut self, what: &str) -> Result<i16> {
        Ok(i16::from_le_bytes(self.take(what)?))
    }
    fn f16(&mut self, what: &str) -> Result<f16> {
        Ok(f16::from_bits(self.u16(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(what)?))
    }
}

impl LdzFile {
    /// Serialises the file, appending the checksum.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let h = &self.header;
        h.check().map_err(|r| invalid(format!("refusing to write: {r}")))?;
        let channels = u16::try_from(h.channels.len()).map_err(|_| invalid("too many channels"))?;
        let words = u32::try_from(self.payload.len()).map_err(|_| invalid("payload too large"))?;
        let mut out = Vec::with_capacity(FIXED_HEADER + PER_CHANNEL * h.channels.len() + 8 + 4 * self.payload.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, 0]);
        out.extend_from_slice(&h.fingerprint.to_le_bytes());
        for v in [h.width, h.height] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [h.patch, h.tile, h.overlap, channels] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(h.quality);
        for c in &h.channels {
            for v in [c.offset.to_bits(), c.step.to_bits(), c.lo as u16, c.hi as u16] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            for s in c.scales {
                out.extend_from_slice(&s.to_bits().to_le_bytes());
            }
        }
        out.extend_from_slice(&words.to_le_bytes());
        for w in &self.payload {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        Ok(out)
    }

    /// Reads only the header (for `ldmae info`); the checksum is still verified.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Cursor { bytes, pos: 0 };
        if r.take::<4>("magic").ok() != Some(MAGIC) {
            return Err(invalid("not a .ldz file (bad magic)"));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(Error::LdzVersion { found: version, supported: VERSION });
        }
        if r.u8("flags")? != 0 {
            return Err(invalid("unknown flags set"));
        }
        if bytes.len() < FIXED_HEADER + 8 {
            return Err(invalid(format!("truncated: {} bytes", bytes.len())));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(invalid("checksum mismatch: the file is damaged or truncated"));
        }
        let mut r = Cursor { bytes: body, pos: 6 };
        let fingerprint = r.u64("fingerprint")?;
        let (width, height) = (r.u32("width")?, r.u32("height")?);
        let (patch, tile, overlap) = (r.u16("patch")?, r.u16("tile")?, r.u16("overlap")?);
        let channels = r.u16("channel count")? as usize;
        let quality = r.u8("quality")?;
        if channels > MAX_CHANNELS || channels * PER_CHANNEL > body.len() - r.pos {
            return Err(invalid(format!("{channels} channels do not fit in the file")));
        }
        let channels = (0..channels)
            .map(|_| {
                Ok(ChannelCoding {
                    offset: r.f16("channel offset")?,
                    step: r.f16("channel step")?,
                    lo: r.i16("symbol range")?,
                    hi: r.i16("symbol range")?,
                    scales: [r.f16("entropy scale")?, r.f16("entropy scale")?, r.f16("entropy scale")?],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let header = Header { fingerprint, width, height, patch, tile, overlap, quality, channels };
        header.check().map_err(invalid)?;
        let words = r.u32("payload length")? as usize;
        if words.checked_mul(4) != Some(body.len() - r.pos) {
            return Err(invalid(format!(
                "payload of {words} words does not match the {} bytes left",
                body.len() - r.pos
            )));
        }
        let payload = (0..words).map(|_| r.u32("payload")).collect::<Result<Vec<_>>>()?;
        Ok(Self { header, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> LdzFile {
        let c = ChannelCoding {
            offset: f16::from_f32(-0.25),
            step: f16::from_f32(0.1),
            lo: -3,
            hi: 7,
            scales: [f16::from_f32(0.5), f16::from_f32(1.0), f16::from_f32(2.0)],
        };
        let header = Header {
            fingerprint: 0x0123_4567_89ab_cdef,
            width: 300,
            height: 200,
            patch: 8,
            tile: 32,
            overlap: 8,
            quality: 50,
            channels: vec![c; 4],
        };
        LdzFile { header, payload: vec![1, 2, 0xdead_beef] }
    }

    #[test]
    fn roundtrips_and_sizes_the_latent() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        assert_eq!(bytes.len(), FIXED_HEADER + 4 * PER_CHANNEL + 4 + 12 + 4);
        assert_eq!(f.byte_len(), bytes.len());
        assert_eq!(LdzFile::parse(&bytes).unwrap(), f);
        assert_eq!(f.header.latent_size(), (32, 38));
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let bytes = sample().to_bytes().unwrap();
        for n in 0..bytes.len() {
            assert!(LdzFile::parse(&bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(LdzFile::parse(&b).is_err(), "bit {i}");
        }
    }

    #[test]
    fn unknown_versions_and_bad_fields_are_named() {
        let mut bytes = sample().to_bytes().unwrap();
        bytes[4] = 2;
        assert_eq!(LdzFile::parse(&bytes), Err(Error::LdzVersion { found: 2, supported: 1 }));
        let mut f = sample();
        f.header.overlap = 32;
        assert!(matches!(f.to_bytes(), Err(Error::Ldz(r)) if r.contains("overlap")));
        f.header.overlap = 0;
        f.header.width = 1 << 20;
        assert!(matches!(f.to_bytes(), Err(Error::Ldz(r)) if r.contains("pixels")));
    }
}

//! 8-bit RGB images, their conversion to and from model tensors exactly as the official code
//! does it, and PNG files (std).

use crate::error::{Error, Result};
use alloc::format;
use alloc::vec::Vec;
use burn::tensor::{Device, Tensor, TensorData};

/// An 8-bit RGB image, row-major, channels interleaved (HWC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width · height · 3` bytes: R, G, B of each pixel, rows top to bottom.
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// Checks that the buffer holds `width · height · 3` bytes.
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<Self> {
        if width.checked_mul(height).and_then(|n| n.checked_mul(3)) != Some(pixels.len()) {
            return Err(Error::Image(format!("{} bytes for a {width}x{height} RGB image", pixels.len())));
        }
        Ok(Self { width, height, pixels })
    }
}

/// How the bytes of one pixel are laid out in a camera-style buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Red, green, blue.
    Rgb8,
    /// Red, green, blue, alpha (alpha ignored on input, 255 on output).
    Rgba8,
    /// Blue, green, red, alpha (Android bitmaps, iOS `CVPixelBuffer`s).
    Bgra8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
        }
    }
}

impl RgbImage {
    /// Copies an image out of a buffer of `height` rows, `stride` bytes apart, each starting with
    /// `width` pixels in `format` (rows may be padded, as camera frames often are).
    pub fn from_raw(pixels: &[u8], width: usize, height: usize, stride: usize, format: PixelFormat) -> Result<Self> {
        let bpp = format.bytes_per_pixel();
        let row = width.checked_mul(bpp).ok_or_else(|| Error::Image(format!("{width} pixels per row overflow")))?;
        if width == 0 || height == 0 {
            return Err(Error::Image(format!("a {width}x{height} image is empty")));
        }
        if stride < row {
            return Err(Error::Image(format!("stride {stride} is below {width} pixels of {bpp} bytes")));
        }
        let needed = (height - 1).checked_mul(stride).and_then(|n| n.checked_add(row));
        if needed.is_none_or(|n| pixels.len() < n) {
            return Err(Error::Image(format!(
                "{} bytes for {height} rows of stride {stride} ({row} bytes of pixels each)",
                pixels.len()
            )));
        }
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for p in pixels[y * stride..y * stride + row].chunks_exact(bpp) {
                match format {
                    PixelFormat::Rgb8 | PixelFormat::Rgba8 => rgb.extend_from_slice(&p[..3]),
                    PixelFormat::Bgra8 => rgb.extend_from_slice(&[p[2], p[1], p[0]]),
                }
            }
        }
        Self::new(width, height, rgb)
    }

    /// The pixels tightly packed in `format` (alpha 255).
    pub fn to_format(&self, format: PixelFormat) -> Vec<u8> {
        match format {
            PixelFormat::Rgb8 => self.pixels.clone(),
            PixelFormat::Rgba8 => self.pixels.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            PixelFormat::Bgra8 => self.pixels.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0], 255]).collect(),
        }
    }
}

/// Model input `[N, 3, H, W]` in `[-1, 1]` from same-sized images: `(v/255 − 0.5)/0.5` in f32,
/// as `ToTensor` + `Normalize(0.5, 0.5)` compute it.
pub fn images_to_tensor(images: &[RgbImage], device: &Device) -> Result<Tensor<4>> {
    let first = images.first().ok_or_else(|| Error::Image("no images given".into()))?;
    let (w, h) = (first.width, first.height);
    if images.iter().any(|im| im.width != w || im.height != h) {
        return Err(Error::Image("images in one batch must have the same size".into()));
    }
    let mut values = Vec::with_capacity(images.len() * 3 * w * h);
    for im in images {
        for c in 0..3 {
            values.extend(im.pixels.iter().skip(c).step_by(3).map(|&v| (v as f32 / 255.0 - 0.5) / 0.5));
        }
    }
    Ok(Tensor::from_data(TensorData::new(values, [images.len(), 3, h, w]), device))
}

/// The official `decode_to_images` conversion: `clamp(127.5·x + 128, 0, 255)` truncated to u8.
/// Refuses non-finite pixels instead of turning them into black.
pub fn tensor_to_images(pixels: Tensor<4>) -> Result<Vec<RgbImage>> {
    let [n, c, h, w] = pixels.dims();
    if c != 3 {
        return Err(Error::InputShape {
            what: "pixel tensor",
            expected: "[N, 3, H, W]".into(),
            found: alloc::vec![n, c, h, w],
        });
    }
    let values = tensor_values(pixels, "decoded pixels")?;
    let plane = h * w;
    Ok((0..n)
        .map(|i| {
            let img = &values[i * 3 * plane..(i + 1) * 3 * plane];
            let pixels = (0..plane)
                .flat_map(|p| (0..3).map(move |ch| (127.5f32 * img[ch * plane + p] + 128.0).clamp(0.0, 255.0) as u8))
                .collect();
            RgbImage { width: w, height: h, pixels }
        })
        .collect())
}

/// Reads a tensor back as f32 values, failing on NaN or infinity.
pub fn tensor_values<const D: usize>(t: Tensor<D>, what: &'static str) -> Result<Vec<f32>> {
    let values = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading back {what}: {e:?}")))?;
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { what });
    }
    Ok(values)
}

/// Lays images of equal size side by side in one row.
pub fn horizontal_strip(images: &[RgbImage]) -> Result<RgbImage> {
    grid(images, images.len())
}

/// Lays images of equal size out in rows of `columns`, left to right, top to bottom (a last
/// short row is padded with black).
pub fn grid(images: &[RgbImage], columns: usize) -> Result<RgbImage> {
    let first = images.first().ok_or_else(|| Error::Image("no images given".into()))?;
    let (w, h) = (first.width, first.height);
    if images.iter().any(|im| im.width != w || im.height != h) || columns == 0 {
        return Err(Error::Image("grid images must have the same size, and a row at least one".into()));
    }
    let rows = images.len().div_ceil(columns);
    let mut pixels = alloc::vec![0u8; rows * h * columns * w * 3];
    for (i, im) in images.iter().enumerate() {
        let (top, left) = ((i / columns) * h, (i % columns) * w);
        for y in 0..h {
            let at = ((top + y) * columns * w + left) * 3;
            pixels[at..at + w * 3].copy_from_slice(&im.pixels[y * w * 3..(y + 1) * w * 3]);
        }
    }
    RgbImage::new(columns * w, rows * h, pixels)
}

#[cfg(feature = "std")]
mod png_io {
    use super::RgbImage;
    use crate::error::{Error, Result};
    use alloc::{format, vec};
    use std::path::Path;

    /// Largest side accepted from a PNG header (guards the allocation).
    const MAX_SIDE: u32 = 1 << 15;

    /// Reads an 8- or 16-bit PNG (gray, gray+alpha, RGB, RGBA, palette) as 8-bit RGB.
    /// Alpha is ignored; 16-bit samples keep their high byte.
    pub fn read_png(path: &Path) -> Result<RgbImage> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: &dyn std::fmt::Display| Error::Image(format!("{}: {e}", path.display()));
        let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
        let (w, h) = (reader.info().width, reader.info().height);
        if w > MAX_SIDE || h > MAX_SIDE {
            return Err(bad(&format!("{w}x{h} exceeds the {MAX_SIDE}-pixel side limit")));
        }
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
        let data = &buf[..frame.buffer_size()];
        let channels = match frame.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => return Err(bad(&"palette PNG was not expanded")),
        };
        let pixels = data
            .chunks_exact(channels)
            .flat_map(|p| if channels < 3 { [p[0], p[0], p[0]] } else { [p[0], p[1], p[2]] })
            .collect();
        RgbImage::new(w as usize, h as usize, pixels)
    }

    /// Reads a baseline or progressive JPEG (grey, YCbCr, CMYK) as 8-bit RGB.
    pub fn read_jpeg(path: &Path) -> Result<RgbImage> {
        use zune_jpeg::zune_core::{bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions};
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: &dyn std::fmt::Display| Error::Image(format!("{}: {e}", path.display()));
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(MAX_SIDE as usize)
            .set_max_height(MAX_SIDE as usize);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&bytes), options);
        let pixels = decoder.decode().map_err(|e| bad(&e))?;
        let info = decoder.info().ok_or_else(|| bad(&"no JPEG header"))?;
        RgbImage::new(info.width as usize, info.height as usize, pixels)
    }

    /// Reads a PNG or a JPEG (told apart by their first bytes) as 8-bit RGB.
    pub fn read_image(path: &Path) -> Result<RgbImage> {
        use std::io::Read;
        let mut head = [0u8; 3];
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let n = file.read(&mut head).map_err(|e| Error::io(path, e))?;
        if head[..n] == [0xff, 0xd8, 0xff] { read_jpeg(path) } else { read_png(path) }
    }

    /// Writes an 8-bit RGB PNG.
    pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let bad = |e: png::EncodingError| Error::Image(format!("{}: {e}", path.display()));
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), image.width as u32, image.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(bad)?;
        writer.write_image_data(&image.pixels).map_err(bad)?;
        writer.finish().map_err(bad)
    }
}

#[cfg(feature = "std")]
pub use png_io::{read_image, read_jpeg, read_png, write_png};

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn uint8_conversion_matches_the_official_formula() {
        let device = crate::device::cpu();
        // 127.5·x + 128 truncated: -1 → 0.5 → 0, 0 → 128, 1 → 255.5 → 255, 0.999 → 255.37 → 255,
        // -0.9961 → 1.00 → 1 (0.9961·127.5 = 127.0), and out-of-range values clamp.
        let x = [-1.0f32, 0.0, 1.0, 0.999, -0.996, 3.0, -3.0, 0.5];
        let mut v = Vec::new();
        for c in 0..3 {
            v.extend(x.iter().map(|&a| a + c as f32 * 0.0));
        }
        let t = Tensor::<4>::from_data(TensorData::new(v, [1, 3, 1, 8]), &device);
        let im = tensor_to_images(t).unwrap().remove(0);
        let red: Vec<u8> = im.pixels.iter().step_by(3).copied().collect();
        assert_eq!(red, vec![0, 128, 255, 255, 1, 255, 0, 191]);
    }

    #[test]
    fn nan_pixels_are_an_error() {
        let t = Tensor::<4>::from_data(TensorData::new(vec![f32::NAN; 3], [1, 3, 1, 1]), &crate::device::cpu());
        assert_eq!(tensor_to_images(t), Err(Error::NonFinite { what: "decoded pixels" }));
    }

    #[test]
    fn camera_buffers_are_read_with_stride_and_channel_order() {
        // 2x2 BGRA with 3 bytes of row padding.
        let bgra = [3, 2, 1, 9, 6, 5, 4, 9, 0, 0, 0, 30, 20, 10, 9, 60, 50, 40, 9, 0, 0, 0];
        let im = RgbImage::from_raw(&bgra, 2, 2, 11, PixelFormat::Bgra8).unwrap();
        assert_eq!(im.pixels, vec![1, 2, 3, 4, 5, 6, 10, 20, 30, 40, 50, 60]);
        assert_eq!(im.to_format(PixelFormat::Bgra8)[..8], [3, 2, 1, 255, 6, 5, 4, 255]);
        assert_eq!(im.to_format(PixelFormat::Rgba8)[4..8], [4, 5, 6, 255]);
        let rgba = RgbImage::from_raw(&im.to_format(PixelFormat::Rgba8), 2, 2, 8, PixelFormat::Rgba8).unwrap();
        assert_eq!(rgba, im);
        // The last row needs only its pixels, not a whole stride; one byte less is an error.
        assert!(RgbImage::from_raw(&bgra[..19], 2, 2, 11, PixelFormat::Bgra8).is_ok());
        for (len, w, h, stride) in [(18, 2, 2, 11), (22, 2, 2, 7), (22, 0, 2, 11), (22, usize::MAX, 1, 11)] {
            assert!(matches!(RgbImage::from_raw(&bgra[..len], w, h, stride, PixelFormat::Bgra8), Err(Error::Image(_))));
        }
    }

    #[test]
    fn images_round_trip_through_the_input_conversion() {
        let im = RgbImage::new(2, 1, vec![0, 128, 255, 10, 20, 30]).unwrap();
        let t = images_to_tensor(core::slice::from_ref(&im), &crate::device::cpu()).unwrap();
        let v = tensor_values(t, "x").unwrap();
        // Channel-planar: R of both pixels, then G, then B.
        assert_eq!(v[0], -1.0);
        assert_eq!(v[1], (10.0 / 255.0 - 0.5) / 0.5);
        assert_eq!(v[4], 1.0);
        assert_eq!(
            tensor_to_images(images_to_tensor(core::slice::from_ref(&im), &crate::device::cpu()).unwrap()).unwrap()[0],
            im
        );
    }
}

//! Images of any size through a VMAE with a fixed input size: overlapping tiles of the native
//! grid, blended with linear ramps — latents in latent space, pixels in pixel space.
//!
//! The image is padded (edge pixels repeated) to whole latent cells and at least one tile; the
//! latent of an `H × W` image is `C × ⌈H/p⌉ × ⌈W/p⌉` (at least the native grid). Tiles are
//! processed a batch at a time, so memory is the image, its latent and one batch of tiles.

use crate::error::{Error, Result};
use crate::io::image::{RgbImage, tensor_values};
use crate::model::Vmae;
use crate::progress::Progress;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use burn::tensor::{Tensor, TensorData};

/// Largest image (in pixels) that is tiled, and that a `.ldz` file may describe: 64 Mpixel.
pub const MAX_PIXELS: u64 = 1 << 26;

/// A latent `[channels, height, width]`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Latent {
    /// Latent channels.
    pub channels: usize,
    /// Rows of latent cells.
    pub height: usize,
    /// Columns of latent cells.
    pub width: usize,
    /// `channels · height · width` values, channel planes one after another.
    pub values: Vec<f32>,
}

/// How images are cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileOptions {
    /// Overlap of neighbouring tiles in latent cells (must be below the native grid).
    pub overlap: usize,
    /// Tiles per network call.
    pub batch: usize,
}

impl TileOptions {
    /// A quarter of the native grid of overlap, 4 tiles per call.
    pub fn for_model(vmae: &Vmae) -> Self {
        Self { overlap: vmae.config().grid() / 4, batch: 4 }
    }
}

/// Tile starts along an axis of `len ≥ tile` cells: every `tile − overlap`, the last flush
/// with the end.
pub fn tile_starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    let step = tile - overlap;
    let mut out: Vec<usize> = (0..).map(|i| i * step).take_while(|&s| s + tile < len).collect();
    out.push(len - tile);
    out
}

/// Blending weights along one axis for a tile of `n` units starting at `start` on an axis of
/// `len` units, overlapping its neighbours by `overlap` units. Sides at the image border weigh
/// 1; on a side shared with a neighbour the outer quarter of the overlap is dropped (tile
/// borders are where the networks see the least context) and the weight then ramps up
/// linearly over the rest of the overlap.
fn axis_weights(start: usize, n: usize, len: usize, overlap: usize) -> Vec<f32> {
    let (trim, ramp) = (overlap / 4, (overlap - 2 * (overlap / 4)).max(1));
    let side = |d: usize, shared: bool| {
        if !shared {
            1.0
        } else if d < trim {
            0.0
        } else {
            ((d - trim) as f32 + 0.5).min(ramp as f32) / ramp as f32
        }
    };
    (0..n).map(|i| side(i, start > 0).min(side(n - 1 - i, start + n < len))).collect()
}

/// Tile positions (row, column) in latent cells for a latent of `rows × cols` cells.
fn tiles(rows: usize, cols: usize, grid: usize, overlap: usize) -> Vec<(usize, usize)> {
    let cs = tile_starts(cols, grid, overlap);
    tile_starts(rows, grid, overlap).into_iter().flat_map(|r| cs.iter().map(move |&c| (r, c))).collect()
}

fn check_overlap(vmae: &Vmae, o: &TileOptions) -> Result<()> {
    if o.overlap >= vmae.config().grid() || o.batch == 0 {
        return Err(Error::InputValue {
            what: "tile options",
            reason: format!(
                "overlap {} must be below the tile grid {}, batch above 0",
                o.overlap,
                vmae.config().grid()
            ),
        });
    }
    Ok(())
}

/// Latent grid (rows, columns) of a `width × height` image for a stride of `patch` pixels and
/// tiles of `tile` cells: the image padded up to whole cells and at least one tile.
pub fn latent_size(patch: usize, tile: usize, width: usize, height: usize) -> (usize, usize) {
    (height.div_ceil(patch).max(tile), width.div_ceil(patch).max(tile))
}

/// Weighted sum of `[C, n, n]` tiles into a `[C, rows, cols]` plane stack.
struct Blender {
    acc: Vec<f32>,
    weight: Vec<f32>,
    rows: usize,
    cols: usize,
    n: usize,
    overlap: usize,
}

impl Blender {
    fn new(channels: usize, rows: usize, cols: usize, n: usize, overlap: usize) -> Self {
        Self { acc: vec![0.0; channels * rows * cols], weight: vec![0.0; rows * cols], rows, cols, n, overlap }
    }

    fn add(&mut self, tile: &[f32], top: usize, left: usize) {
        let n = self.n;
        let wy = axis_weights(top, n, self.rows, self.overlap);
        let wx = axis_weights(left, n, self.cols, self.overlap);
        let plane = self.rows * self.cols;
        for (c, values) in tile.chunks_exact(n * n).enumerate() {
            for (y, row) in values.chunks_exact(n).enumerate() {
                let at = c * plane + (top + y) * self.cols + left;
                for (x, &v) in row.iter().enumerate() {
                    let w = wy[y] * wx[x];
                    self.acc[at + x] += w * v;
                    if c == 0 {
                        self.weight[at + x] += w;
                    }
                }
            }
        }
    }

    fn finish(mut self) -> Vec<f32> {
        let plane = self.rows * self.cols;
        for (i, v) in self.acc.iter_mut().enumerate() {
            *v /= self.weight[i % plane];
        }
        self.acc
    }
}

fn check_size(width: usize, height: usize) -> Result<()> {
    if width == 0 || height == 0 || (width as u64) * (height as u64) > MAX_PIXELS {
        return Err(Error::Image(format!("image of {width}x{height} pixels is empty or above {MAX_PIXELS} pixels")));
    }
    Ok(())
}

/// Posterior mean of an image of any size; `progress` hears `(tiles done, tiles)` after each
/// batch of tiles and may cancel.
pub fn encode(vmae: &Vmae, image: &RgbImage, o: &TileOptions, mut progress: impl Progress) -> Result<Latent> {
    check_overlap(vmae, o)?;
    check_size(image.width, image.height)?;
    let c = vmae.config();
    let (p, g, s, ch) = (c.patch_size, c.grid(), c.image_size, c.latent_channels);
    let (rows, cols) = latent_size(p, g, image.width, image.height);
    let positions = tiles(rows, cols, g, o.overlap);
    let mut blend = Blender::new(ch, rows, cols, g, o.overlap);
    let device = vmae.device();
    let pixel = |y: usize, x: usize, k: usize| {
        let (y, x) = (y.min(image.height - 1), x.min(image.width - 1));
        image.pixels[(y * image.width + x) * 3 + k] as f32 / 127.5 - 1.0
    };
    for (done, batch) in positions.chunks(o.batch).enumerate() {
        let mut values = Vec::with_capacity(batch.len() * 3 * s * s);
        for &(r, col) in batch {
            for k in 0..3 {
                for y in 0..s {
                    values.extend((0..s).map(|x| pixel(r * p + y, col * p + x, k)));
                }
            }
        }
        let x = Tensor::from_data(TensorData::new(values, [batch.len(), 3, s, s]), &device);
        let mean = tensor_values(vmae.encode(x)?.mean, "encoded latent")?;
        for (&(r, col), tile) in batch.iter().zip(mean.chunks_exact(ch * g * g)) {
            blend.add(tile, r, col);
        }
        progress.report((done * o.batch + batch.len()).min(positions.len()), positions.len())?;
    }
    Ok(Latent { channels: ch, height: rows, width: cols, values: blend.finish() })
}

/// Decodes a latent from [`encode`] to a `width × height` image (the padding is cropped off),
/// pixels converted as `round(127.5·(x + 1))`, clamped.
pub fn decode(
    vmae: &Vmae,
    latent: &Latent,
    width: usize,
    height: usize,
    o: &TileOptions,
    mut progress: impl Progress,
) -> Result<RgbImage> {
    check_overlap(vmae, o)?;
    check_size(width, height)?;
    let c = vmae.config();
    let (p, g, s, ch) = (c.patch_size, c.grid(), c.image_size, c.latent_channels);
    let (rows, cols) = latent_size(p, g, width, height);
    if (latent.channels, latent.height, latent.width) != (ch, rows, cols) || latent.values.len() != ch * rows * cols {
        return Err(Error::InputShape {
            what: "latent to decode",
            expected: format!("[{ch}, {rows}, {cols}] for a {width}x{height} image"),
            found: vec![latent.channels, latent.height, latent.width],
        });
    }
    let positions = tiles(rows, cols, g, o.overlap);
    let mut blend = Blender::new(3, rows * p, cols * p, s, o.overlap * p);
    let device = vmae.device();
    let plane = rows * cols;
    for (done, batch) in positions.chunks(o.batch).enumerate() {
        let mut values = Vec::with_capacity(batch.len() * ch * g * g);
        for &(r, col) in batch {
            for k in 0..ch {
                for y in 0..g {
                    let at = k * plane + (r + y) * cols + col;
                    values.extend_from_slice(&latent.values[at..at + g]);
                }
            }
        }
        let z = Tensor::from_data(TensorData::new(values, [batch.len(), ch, g, g]), &device);
        let pixels = tensor_values(vmae.decode(z)?, "decoded pixels")?;
        for (&(r, col), tile) in batch.iter().zip(pixels.chunks_exact(3 * s * s)) {
            blend.add(tile, r * p, col * p);
        }
        progress.report((done * o.batch + batch.len()).min(positions.len()), positions.len())?;
    }
    let full = blend.finish();
    let (fw, fplane) = (cols * p, rows * p * cols * p);
    let pixels = (0..height * width * 3)
        .map(|i| {
            let (y, x, k) = (i / (3 * width), (i / 3) % width, i % 3);
            libm::roundf(127.5 * (full[k * fplane + y * fw + x] + 1.0)).clamp(0.0, 255.0) as u8
        })
        .collect();
    RgbImage::new(width, height, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_axis_with_the_requested_overlap() {
        assert_eq!(tile_starts(32, 32, 8), vec![0]);
        assert_eq!(tile_starts(40, 32, 8), vec![0, 8]);
        assert_eq!(tile_starts(96, 32, 8), vec![0, 24, 48, 64]);
        for len in 32..200 {
            let s = tile_starts(len, 32, 8);
            assert_eq!(s[0], 0);
            assert_eq!(*s.last().unwrap(), len - 32);
            assert!(s.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 24), "{len}: {s:?}");
        }
    }

    #[test]
    fn weights_drop_shared_borders_and_cover_every_position() {
        assert_eq!(axis_weights(0, 8, 8, 4), vec![1.0; 8]);
        assert_eq!(axis_weights(0, 8, 20, 4), vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.25, 0.0]);
        assert_eq!(axis_weights(12, 8, 20, 4), vec![0.0, 0.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(axis_weights(3, 4, 10, 1), vec![0.5, 1.0, 1.0, 0.5]);
        for (len, n, overlap) in [(20, 8, 4), (37, 8, 2), (100, 16, 4), (64, 16, 8), (17, 16, 0)] {
            let mut total = vec![0.0; len];
            for s in tile_starts(len, n, overlap) {
                for (i, w) in axis_weights(s, n, len, overlap).into_iter().enumerate() {
                    total[s + i] += w;
                }
            }
            assert!(total.iter().all(|&w| w > 0.0), "{len} {n} {overlap}: {total:?}");
        }
    }
}

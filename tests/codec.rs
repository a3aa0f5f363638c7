//! Tiling and the `.ldz` codec on the tiny VMAE: tiles assemble exactly like direct encodes,
//! any image size round-trips, damaged or foreign files are refused with clear errors.

mod common;

use burn::tensor::Tensor;
use common::{max_abs_diff, repo_path};
use ldmae::codec::tiling::{self, TileOptions};
use ldmae::io::image::{RgbImage, images_to_tensor, tensor_values};
use ldmae::weights::VmaeOverrides;
use ldmae::weights::convert::convert_vmae;
use ldmae::{Codec, Error, Pack, Precision, Vmae, device};

fn pack(dtype: Precision) -> Pack {
    let path = repo_path("tests/fixtures/tiny/vmae.pth");
    Pack::from_bytes(&convert_vmae(&path, dtype, VmaeOverrides::default()).unwrap()).unwrap()
}

/// A smooth colour pattern with some texture, `width × height`.
fn picture(width: usize, height: usize) -> RgbImage {
    let pixels = (0..width * height * 3)
        .map(|i| {
            let (y, x, c) = ((i / 3 / width) as f32, (i / 3 % width) as f32, (i % 3) as f32);
            let v = 128.0 + 90.0 * (0.11 * x + 0.07 * y + c).sin() + 30.0 * (0.9 * x * (c + 1.0)).cos();
            v.clamp(0.0, 255.0) as u8
        })
        .collect();
    RgbImage::new(width, height, pixels).unwrap()
}

fn crop(img: &RgbImage, left: usize, size: usize) -> RgbImage {
    let pixels =
        (0..size * size * 3).map(|i| img.pixels[((i / 3 / size) * img.width + left + i / 3 % size) * 3 + i % 3]);
    RgbImage::new(size, size, pixels.collect()).unwrap()
}

fn direct_mean(vmae: &Vmae, img: &RgbImage) -> Vec<f32> {
    let x = images_to_tensor(std::slice::from_ref(img), &vmae.device()).unwrap();
    tensor_values(vmae.encode(x).unwrap().mean, "mean").unwrap()
}

#[test]
fn tiles_blend_like_direct_encodes() {
    let vmae = Vmae::load(&pack(Precision::F32), &device::cpu()).unwrap();
    let (s, g) = (vmae.config().image_size, vmae.config().grid());
    assert_eq!((s, g), (32, 4));
    // 80 px = 10 cells: tiles start at cells 0, 3, 6 (overlap 1); cells 3 and 6 are shared.
    let img = picture(80, 32);
    let o = TileOptions { overlap: 1, batch: 2 };
    let latent = tiling::encode(&vmae, &img, &o, |_, _| {}).unwrap();
    assert_eq!((latent.channels, latent.height, latent.width), (4, 4, 10));
    let tiles: Vec<Vec<f32>> = [0, 3, 6].iter().map(|&c| direct_mean(&vmae, &crop(&img, c * 8, s))).collect();
    let tile_at = |t: usize, ch: usize, y: usize, x: usize| tiles[t][(ch * g + y) * g + x];
    for ch in 0..4 {
        for y in 0..4 {
            for x in 0..10 {
                let expected = match x {
                    0..=2 => tile_at(0, ch, y, x),
                    3 => 0.5 * (tile_at(0, ch, y, 3) + tile_at(1, ch, y, 0)),
                    4..=5 => tile_at(1, ch, y, x - 3),
                    6 => 0.5 * (tile_at(1, ch, y, 3) + tile_at(2, ch, y, 0)),
                    _ => tile_at(2, ch, y, x - 6),
                };
                let got = latent.values[(ch * 4 + y) * 10 + x];
                assert!((got - expected).abs() <= 1e-5, "ch {ch} y {y} x {x}: {got} vs {expected}");
            }
        }
    }
    // One tile: the tiled decoder is the plain decoder with the official pixel conversion rounded.
    let one = tiling::encode(&vmae, &crop(&img, 0, s), &o, |_, _| {}).unwrap();
    let decoded = tiling::decode(&vmae, &one, s, s, &o, |_, _| {}).unwrap();
    let z = Tensor::<4>::from_data(burn::tensor::TensorData::new(one.values.clone(), [1, 4, g, g]), &vmae.device());
    let pixels = tensor_values(vmae.decode(z).unwrap(), "pixels").unwrap();
    for (i, &v) in decoded.pixels.iter().enumerate() {
        let (y, x, c) = (i / 3 / s, i / 3 % s, i % 3);
        let expected = (127.5 * (pixels[(c * s + y) * s + x] + 1.0)).round().clamp(0.0, 255.0);
        assert!((v as f32 - expected).abs() <= 1.0, "pixel {i}: {v} vs {expected}");
    }
}

#[test]
fn any_size_round_trips_and_quality_trades_bytes_for_error() {
    let codec = Codec::new(&pack(Precision::F32), &device::cpu()).unwrap();
    for (w, h) in [(1, 1), (37, 29), (100, 41)] {
        let img = picture(w, h);
        let out = codec.decompress(&codec.compress(&img).unwrap()).unwrap();
        assert_eq!((out.width, out.height, out.pixels.len()), (w, h, w * h * 3));
    }
    // Against the unquantised latent's decode, error falls and size grows with quality.
    let img = picture(70, 50);
    let o = codec.tiles;
    let latent = tiling::encode(codec.vmae(), &img, &o, |_, _| {}).unwrap();
    let clean = tiling::decode(codec.vmae(), &latent, 70, 50, &o, |_, _| {}).unwrap();
    let as_f32 = |im: &RgbImage| im.pixels.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let mut last = (f64::INFINITY, 0);
    for q in [20, 50, 80, 100] {
        let bytes =
            Codec::new(&pack(Precision::F32), &device::cpu()).unwrap().with_quality(q).unwrap().compress(&img).unwrap();
        let out = codec.decompress(&bytes).unwrap();
        let (a, b) = (as_f32(&out), as_f32(&clean));
        let mse = a.iter().zip(&b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mse < last.0 && bytes.len() > last.1, "quality {q}: mse {mse}, {} bytes", bytes.len());
        last = (mse, bytes.len());
    }
    assert!(last.0 < 1.0, "quality 100 is within a level of the unquantised decode: mse {}", last.0);
    assert!(max_abs_diff(&as_f32(&codec.decompress(&codec.compress(&img).unwrap()).unwrap()), &as_f32(&clean)) > 0.0);
}

#[test]
fn precision_does_not_change_the_model_identity_but_weights_do() {
    let (f32_pack, f16_pack) = (pack(Precision::F32), pack(Precision::F16));
    assert_eq!(ldmae::codec::fingerprint(&f32_pack).unwrap(), ldmae::codec::fingerprint(&f16_pack).unwrap());
    let bytes = Codec::new(&f32_pack, &device::cpu()).unwrap().compress(&picture(40, 40)).unwrap();
    Codec::new(&f16_pack, &device::cpu()).unwrap().decompress(&bytes).unwrap();

    let other = common::edited_pack(&f32_pack, |tensors| {
        let bias = tensors.iter_mut().find(|t| t.0 == "decoder_pred.conv_smoother.bias").unwrap();
        bias.2[0] += 0.01;
    });
    let other = Pack::from_bytes(&other).unwrap();
    let err = Codec::new(&other, &device::cpu()).unwrap().decompress(&bytes).unwrap_err();
    assert!(matches!(err, Error::LdzModel { .. }), "{err}");
    assert!(err.to_string().contains("decompress it with the weights it was compressed with"), "{err}");
}

#[test]
fn damaged_files_are_refused_cleanly() {
    let codec = Codec::new(&pack(Precision::F32), &device::cpu()).unwrap();
    let bytes = codec.compress(&picture(45, 33)).unwrap();
    for n in 0..bytes.len() {
        assert!(matches!(codec.decompress(&bytes[..n]), Err(Error::Ldz(_))), "truncated to {n}");
    }
    for i in (0..bytes.len() * 8).step_by(3) {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        let err = codec.decompress(&b).unwrap_err();
        assert!(matches!(err, Error::Ldz(_) | Error::LdzVersion { .. }), "bit {i}: {err}");
    }
    let mut b = bytes.clone();
    b[4] = 9;
    assert_eq!(
        codec.decompress(&b).unwrap_err().to_string(),
        "unsupported .ldz version 9 (this build reads version 1)"
    );
}

/// How much sharper the reconstruction's pixel-to-pixel steps are across tile edges than across
/// the other patch borders (the ViT decoder leaves its own steps there), each relative to the
/// original's steps at the same place: 1 = no seams.
#[cfg(feature = "embedded-models")]
fn seam_ratio(photo: &RgbImage, back: &RgbImage, p: usize, g: usize, overlap: usize) -> f64 {
    let edges = |len: usize| -> Vec<usize> {
        let cells = len.div_ceil(p).max(g);
        let starts = tiling::tile_starts(cells, g, overlap);
        starts.iter().flat_map(|&s| [s * p, (s + g) * p]).filter(|&x| x > 0 && x < len).collect()
    };
    let (ex, ey) = (edges(photo.width), edges(photo.height));
    let at = |im: &RgbImage, y: usize, x: usize, c: usize| im.pixels[(y * im.width + x) * 3 + c] as f64;
    // [other patch border, tile edge] sums of |step| in the reconstruction and in the original.
    let (mut rec, mut orig) = ([0f64; 2], [0f64; 2]);
    for y in 0..photo.height {
        for x in 0..photo.width {
            for c in 0..3 {
                if x > 0 && x % p == 0 {
                    let k = usize::from(ex.contains(&x));
                    rec[k] += (at(back, y, x, c) - at(back, y, x - 1, c)).abs();
                    orig[k] += (at(photo, y, x, c) - at(photo, y, x - 1, c)).abs();
                }
                if y > 0 && y % p == 0 {
                    let k = usize::from(ey.contains(&y));
                    rec[k] += (at(back, y, x, c) - at(back, y - 1, x, c)).abs();
                    orig[k] += (at(photo, y, x, c) - at(photo, y - 1, x, c)).abs();
                }
            }
        }
    }
    (rec[1] / orig[1]) / (rec[0] / orig[0])
}

#[cfg(feature = "embedded-models")]
#[test]
fn photo_tiles_blend_without_seams() {
    let codec = Codec::new(&ldmae::weights::embedded::photo_vmae().unwrap(), &device::cpu()).unwrap();
    let photo = ldmae::io::image::read_png(&repo_path("tests/fixtures/photo/building.png")).unwrap();
    let (vmae, c) = (codec.vmae(), *codec.vmae().config());
    let mut ratios = vec![];
    for overlap in [0, codec.tiles.overlap] {
        let o = TileOptions { overlap, batch: 4 };
        let latent = tiling::encode(vmae, &photo, &o, |_, _| {}).unwrap();
        let back = tiling::decode(vmae, &latent, photo.width, photo.height, &o, |_, _| {}).unwrap();
        let ratio = seam_ratio(&photo, &back, c.patch_size, c.grid(), overlap);
        eprintln!(
            "overlap {overlap}: steps across tile edges vs other patch borders (relative to the original): {ratio:.3}"
        );
        ratios.push(ratio);
    }
    // Hard tile borders show as extra steps; blended tiles must not (see docs/compression.md).
    assert!(ratios[1] < 1.15, "seams with blending: {ratios:?}");
    assert!(ratios[0] > ratios[1], "blending does not help: {ratios:?}");
}

#[test]
fn camera_buffers_compress_like_rgb_and_progress_can_cancel() {
    let codec = Codec::new(&pack(Precision::F32), &device::cpu()).unwrap();
    let img = picture(70, 40);
    let rgb = codec.compress(&img).unwrap();
    // The same picture as BGRA rows padded to 300 bytes, as a camera hands it over.
    let stride = 300;
    let mut bgra = vec![0u8; stride * img.height];
    for (y, row) in img.pixels.chunks_exact(img.width * 3).enumerate() {
        for (x, p) in row.chunks_exact(3).enumerate() {
            bgra[y * stride + 4 * x..][..4].copy_from_slice(&[p[2], p[1], p[0], 7]);
        }
    }
    let camera = RgbImage::from_raw(&bgra, img.width, img.height, stride, ldmae::PixelFormat::Bgra8).unwrap();
    assert_eq!(codec.compress(&camera).unwrap(), rgb);
    // 70x40 px is 9x5 cells; 4-cell tiles overlapping by 1: 3 x 2 tiles, batches of 4 and 2.
    let mut calls = 0;
    let stop = ldmae::Cancellable(|done, total| {
        calls += 1;
        assert_eq!((done, total), (4, 6));
        false
    });
    assert_eq!(codec.compress_with(&img, stop).unwrap_err(), Error::Cancelled);
    assert_eq!(calls, 1);
    let stop = ldmae::Cancellable(|done, _| done < 4);
    assert_eq!(codec.decompress_with(&rgb, stop).unwrap_err(), Error::Cancelled);
}

#[test]
fn jpeg_photos_are_read() {
    let png = ldmae::io::image::read_png(&repo_path("tests/fixtures/photo/building.png")).unwrap();
    let jpg = ldmae::io::image::read_image(&repo_path("tests/fixtures/photo/building-q92.jpg")).unwrap();
    assert_eq!((jpg.width, jpg.height), (png.width, png.height));
    let se: f64 = jpg.pixels.iter().zip(&png.pixels).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
    let psnr = 10.0 * (255f64.powi(2) / (se / png.pixels.len() as f64)).log10();
    // Pillow's decoder reads this file at 38.52 dB (tests/fixtures/photo/README.md); another
    // correct decoder differs only in IDCT and chroma-upsampling rounding.
    assert!(psnr > 38.0, "JPEG decoded at {psnr:.2} dB");
    assert_eq!(ldmae::io::image::read_image(&repo_path("tests/fixtures/photo/building.png")).unwrap(), png);
}

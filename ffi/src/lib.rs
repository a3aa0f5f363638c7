//! The C ABI of ldmae (`ffi/include/ldmae.h`, generated from this file by cbindgen).
//!
//! Conventions, as in whisper.cpp and ONNX Runtime: every function returns an [`LdmaeStatus`] and
//! writes results through out-pointers; a failure leaves a message for [`ldmae_last_error`];
//! handles are opened and freed in pairs; memory the library hands out (images, buffers) is
//! freed with the matching `ldmae_*_free`. Every pointer and size is checked, and no panic
//! crosses the boundary (it becomes `LDMAE_INTERNAL`).
//!
//! Threads: a handle is used from one thread at a time; separate handles may run on separate
//! threads at once. With `LdmaeOptions.threads > 0` a handle computes on its own pool of that
//! many threads, and progress callbacks are then called on one of them.

#![allow(clippy::missing_safety_doc)] // The safety contract of each function is the header's comment.

use burn::tensor::{Tensor, TensorData};
use ldmae_core::io::image::{PixelFormat, tensor_to_images};
use ldmae_core::{Codec, DeviceChoice, Dit, Error, Generator, Precision, RgbImage, SamplerOverrides, Vmae, device};
use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

/// What a call did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum LdmaeStatus {
    /// Success.
    LDMAE_OK = 0,
    /// A NULL pointer, a short buffer, a bad size, stride or format, an option out of range.
    LDMAE_INVALID_ARGUMENT = 1,
    /// A file could not be read.
    LDMAE_IO = 2,
    /// A damaged, truncated or foreign file (weights or `.ldz`).
    LDMAE_INVALID_DATA = 3,
    /// The compute device failed or is not available.
    LDMAE_DEVICE = 4,
    /// NaN or infinity in a result or an input (e.g. f16 overflow).
    LDMAE_NUMERIC = 5,
    /// The progress callback asked to stop.
    LDMAE_CANCELLED = 6,
    /// A bug: please report the message of `ldmae_last_error`.
    LDMAE_INTERNAL = 7,
}
use LdmaeStatus::*;

/// The layout of one pixel.
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum LdmaePixelFormat {
    /// Red, green, blue: 3 bytes.
    LDMAE_RGB8 = 0,
    /// Red, green, blue, alpha: 4 bytes (alpha ignored on input, 255 on output).
    LDMAE_RGBA8 = 1,
    /// Blue, green, red, alpha: 4 bytes (Android `Bitmap`, iOS `CVPixelBuffer`).
    LDMAE_BGRA8 = 2,
}

/// A pixel format as C hands it over. Rust takes the raw value (any `int` a caller passes is
/// then defined behaviour and checked); the header names it `LdmaePixelFormat`.
pub type PixelFormatCode = u32;
const LDMAE_RGB8: PixelFormatCode = LdmaePixelFormat::LDMAE_RGB8 as u32;
const LDMAE_RGBA8: PixelFormatCode = LdmaePixelFormat::LDMAE_RGBA8 as u32;
const LDMAE_BGRA8: PixelFormatCode = LdmaePixelFormat::LDMAE_BGRA8 as u32;

/// How a handle computes; fill with `ldmae_options_default`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct LdmaeOptions {
    /// 0 auto (a hardware GPU when the library has one, else the CPU), 1 CPU, 2 GPU.
    pub device: i32,
    /// 0 auto (f16 on a GPU with shader-f16, else f32), 1 f32, 2 f16.
    pub dtype: i32,
    /// CPU threads of this handle; 0: all cores (shared with the rest of the process).
    pub threads: u32,
}

/// An image: `height` rows `stride` bytes apart, each `width` pixels in `format`.
#[repr(C)]
#[derive(Debug)]
pub struct LdmaeImage {
    /// The pixel bytes (owned by the library when it filled the image: `ldmae_image_free`).
    pub pixels: *mut u8,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Bytes from one row to the next (images from the library: `width` × bytes per pixel).
    pub stride: u32,
    /// The layout of each pixel.
    pub format: PixelFormatCode,
}

/// Bytes the library hands out; free with `ldmae_buffer_free`.
#[repr(C)]
#[derive(Debug)]
pub struct LdmaeBuffer {
    /// The bytes.
    pub data: *mut u8,
    /// How many.
    pub len: usize,
}

/// Called as work progresses with (units done, units in all); return non-zero to cancel (the call
/// then returns `LDMAE_CANCELLED`).
pub type LdmaeProgress = Option<unsafe extern "C" fn(done: u32, total: u32, user: *mut c_void) -> i32>;

/// What `ldmae_options_default` writes.
const DEFAULT_OPTIONS: LdmaeOptions = LdmaeOptions { device: 0, dtype: 0, threads: 0 };

/// A handle's thread pool (none: the process-wide one).
struct Threads(Option<rayon::ThreadPool>);

impl Threads {
    fn new(threads: u32) -> Result<Self, Failure> {
        if threads == 0 {
            return Ok(Self(None));
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads as usize).build();
        pool.map(|p| Self(Some(p))).map_err(|e| Failure(LDMAE_INTERNAL, format!("thread pool of {threads}: {e}")))
    }

    /// Runs `work` on this handle's threads.
    fn run<T>(&self, work: impl FnOnce() -> T) -> T {
        match &self.0 {
            None => work(),
            Some(pool) => {
                // The caller blocks until `work` is done and a handle is used from one thread at
                // a time, so nothing `work` touches is shared while it runs on the pool.
                let work = AssertSend(work);
                pool.install(move || AssertSend(work.call())).0
            }
        }
    }
}

struct AssertSend<T>(T);
// SAFETY: see `Threads::run`: the value moves to one pool thread and back while its owner waits.
unsafe impl<T> Send for AssertSend<T> {}

impl<T, F: FnOnce() -> T> AssertSend<F> {
    fn call(self) -> T {
        (self.0)()
    }
}

/// A codec handle.
pub struct LdmaeCodec {
    codec: Codec,
    threads: Threads,
}

/// A VMAE handle.
pub struct LdmaeVmae {
    vmae: Vmae,
    threads: Threads,
}

/// A generator handle (a DiT and its VMAE).
pub struct LdmaeGenerator {
    generator: Generator,
    threads: Threads,
}

/// A failed call: its status and message.
struct Failure(LdmaeStatus, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Io { .. } => LDMAE_IO,
            Error::InputShape { .. } | Error::InputValue { .. } | Error::Image(_) => LDMAE_INVALID_ARGUMENT,
            Error::Device(_) => LDMAE_DEVICE,
            Error::NonFinite { .. } | Error::F16Range(_) => LDMAE_NUMERIC,
            Error::Cancelled => LDMAE_CANCELLED,
            _ => LDMAE_INVALID_DATA,
        };
        Failure(status, e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure(LDMAE_INVALID_ARGUMENT, message.into())
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Runs `body`, turning a failure or a panic into a status and this thread's last error.
fn guard(body: impl FnOnce() -> Result<(), Failure>) -> LdmaeStatus {
    let outcome = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let what =
            panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
        Err(Failure(LDMAE_INTERNAL, format!("internal error: {}", what.unwrap_or_else(|| "panic".into()))))
    });
    match outcome {
        Ok(()) => LDMAE_OK,
        Err(Failure(status, message)) => {
            let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
            LAST_ERROR.with(|e| *e.borrow_mut() = message);
            status
        }
    }
}

/// `pointer` as a reference, or an error naming it.
unsafe fn non_null<'a, T>(pointer: *const T, what: &str) -> Result<&'a T, Failure> {
    // SAFETY: the caller passes a valid pointer or NULL (the header's contract).
    unsafe { pointer.as_ref() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// `pointer` as a mutable reference, or an error naming it.
unsafe fn non_null_mut<'a, T>(pointer: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: as in `non_null`.
    unsafe { pointer.as_mut() }.ok_or_else(|| invalid(format!("{what} is NULL")))
}

/// A path argument (NULL: `None`).
unsafe fn path(p: *const c_char, what: &str) -> Result<Option<PathBuf>, Failure> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) }.to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))?;
    Ok(Some(PathBuf::from(s)))
}

fn pixel_format(format: PixelFormatCode) -> Result<PixelFormat, Failure> {
    match format {
        LDMAE_RGB8 => Ok(PixelFormat::Rgb8),
        LDMAE_RGBA8 => Ok(PixelFormat::Rgba8),
        LDMAE_BGRA8 => Ok(PixelFormat::Bgra8),
        other => Err(invalid(format!("unknown pixel format {other} (0 RGB8, 1 RGBA8, 2 BGRA8)"))),
    }
}

/// The device and threads `opts` (NULL: defaults) ask for.
unsafe fn configure(opts: *const LdmaeOptions) -> Result<(burn::tensor::Device, Threads), Failure> {
    // SAFETY: NULL or a valid pointer.
    let o = unsafe { opts.as_ref() }.copied().unwrap_or(DEFAULT_OPTIONS);
    let choice = match o.device {
        // Without this crate's `wgpu` or `cuda` feature there is no GPU to look for.
        0 if cfg!(any(feature = "wgpu", feature = "cuda")) => DeviceChoice::Auto,
        0 => DeviceChoice::Cpu,
        1 => DeviceChoice::Cpu,
        2 if device::cuda_devices() > 0 => DeviceChoice::Cuda,
        2 => DeviceChoice::Wgpu,
        d => return Err(invalid(format!("options.device {d} is not 0 (auto), 1 (cpu) or 2 (gpu)"))),
    };
    let precision = match o.dtype {
        0 => None,
        1 => Some(Precision::F32),
        2 => Some(Precision::F16),
        d => return Err(invalid(format!("options.dtype {d} is not 0 (auto), 1 (f32) or 2 (f16)"))),
    };
    Ok((device::select(choice, precision)?.device, Threads::new(o.threads)?))
}

/// A C progress callback as a [`ldmae_core::Progress`].
struct CProgress {
    callback: LdmaeProgress,
    user: *mut c_void,
}

impl ldmae_core::Progress for CProgress {
    fn report(&mut self, done: usize, total: usize) -> ldmae_core::Result<()> {
        let Some(f) = self.callback else { return Ok(()) };
        // SAFETY: the caller's callback, called with the caller's `user` pointer.
        let stop = unsafe { f(done as u32, total as u32, self.user) };
        if stop != 0 { Err(Error::Cancelled) } else { Ok(()) }
    }
}

/// An image handed out: `rgb` in `format`, tightly packed.
fn export_image(rgb: &RgbImage, format: PixelFormat, code: PixelFormatCode) -> LdmaeImage {
    let bytes = rgb.to_format(format).into_boxed_slice();
    let stride = (rgb.width * format.bytes_per_pixel()) as u32;
    LdmaeImage {
        pixels: Box::into_raw(bytes).cast(),
        width: rgb.width as u32,
        height: rgb.height as u32,
        stride,
        format: code,
    }
}

fn empty_image() -> LdmaeImage {
    LdmaeImage { pixels: std::ptr::null_mut(), width: 0, height: 0, stride: 0, format: LDMAE_RGB8 }
}

/// The pixels a caller hands in, checked against their description.
unsafe fn import_image(
    pixels: *const u8,
    width: u32,
    height: u32,
    stride: u32,
    format: PixelFormatCode,
) -> Result<RgbImage, Failure> {
    let format = pixel_format(format)?;
    if pixels.is_null() {
        return Err(invalid("pixels is NULL"));
    }
    let row = width as u64 * format.bytes_per_pixel() as u64;
    if (stride as u64) < row {
        return Err(invalid(format!("stride {stride} is below width {width} × {} bytes", format.bytes_per_pixel())));
    }
    if width == 0 || height == 0 {
        return Err(invalid(format!("a {width}x{height} image is empty")));
    }
    let len = (height as u64 - 1) * stride as u64 + row;
    let len = usize::try_from(len).map_err(|_| invalid("image too large"))?;
    // SAFETY: the caller promises `height` rows of `stride` bytes (the last needs only `row`).
    let bytes = unsafe { std::slice::from_raw_parts(pixels, len) };
    Ok(RgbImage::from_raw(bytes, width as usize, height as usize, stride as usize, format)?)
}

/// The library's version, e.g. `"0.1.0"`.
#[unsafe(no_mangle)]
pub extern "C" fn ldmae_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// This thread's last failure; `""` when none; never NULL. Valid until this thread's next failure.
#[unsafe(no_mangle)]
pub extern "C" fn ldmae_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Fills `out` with the defaults: auto device, auto precision, all cores. NULL-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_options_default(out: *mut LdmaeOptions) {
    // SAFETY: NULL or a valid pointer.
    if let Some(o) = unsafe { out.as_mut() } {
        *o = DEFAULT_OPTIONS;
    }
}

/// Opens a codec on the VMAE at `vmae_path` (a pack or a `.pth` checkpoint; NULL: the embedded
/// photo VMAE) with `opts` (NULL: defaults). `*out` is NULL on failure.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_codec_open(
    vmae_path: *const c_char,
    opts: *const LdmaeOptions,
    out: *mut *mut LdmaeCodec,
) -> LdmaeStatus {
    guard(|| {
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = std::ptr::null_mut();
        let (device, threads) = unsafe { configure(opts) }?;
        let codec = threads.run(|| match unsafe { path(vmae_path, "vmae_path") }? {
            Some(p) => Ok::<_, Failure>(Codec::new(&*ldmae_core::weights::open_vmae(&p)?, &device)?),
            None => Ok(Codec::new(&ldmae_core::weights::embedded::photo_vmae()?, &device)?),
        })?;
        *out = Box::into_raw(Box::new(LdmaeCodec { codec, threads }));
        Ok(())
    })
}

/// Compresses an image of any size to `.ldz` bytes in `*out` (free with `ldmae_buffer_free`);
/// `quality` 1..100, 0 for the default. The bytes equal `ldmae compress` on the same pixels.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_codec_compress(
    codec: *mut LdmaeCodec,
    pixels: *const u8,
    width: u32,
    height: u32,
    stride: u32,
    format: PixelFormatCode,
    quality: i32,
    progress: LdmaeProgress,
    user: *mut c_void,
    out: *mut LdmaeBuffer,
) -> LdmaeStatus {
    guard(|| {
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = LdmaeBuffer { data: std::ptr::null_mut(), len: 0 };
        let handle = unsafe { non_null(codec, "codec") }?;
        let image = unsafe { import_image(pixels, width, height, stride, format) }?;
        let quality = match quality {
            0 => ldmae_core::codec::DEFAULT_QUALITY,
            q @ 1..=100 => q as u8,
            q => return Err(invalid(format!("quality {q} is outside 1..=100 (0: default)"))),
        };
        let progress = CProgress { callback: progress, user };
        let bytes = handle.threads.run(|| handle.codec.compress_at(&image, quality, progress))?;
        let bytes = bytes.into_boxed_slice();
        let len = bytes.len();
        *out = LdmaeBuffer { data: Box::into_raw(bytes).cast(), len };
        Ok(())
    })
}

/// Decompresses `.ldz` bytes into `*out` in `format`, tightly packed (free with
/// `ldmae_image_free`). Foreign, damaged or truncated data: `LDMAE_INVALID_DATA`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_codec_decompress(
    codec: *mut LdmaeCodec,
    data: *const u8,
    len: usize,
    format: PixelFormatCode,
    progress: LdmaeProgress,
    user: *mut c_void,
    out: *mut LdmaeImage,
) -> LdmaeStatus {
    guard(|| {
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = empty_image();
        let handle = unsafe { non_null(codec, "codec") }?;
        let pixel = pixel_format(format)?;
        if data.is_null() {
            return Err(invalid("data is NULL"));
        }
        // SAFETY: the caller passes `len` readable bytes.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        let progress = CProgress { callback: progress, user };
        let image = handle.threads.run(|| handle.codec.decompress_with(bytes, progress))?;
        *out = export_image(&image, pixel, format);
        Ok(())
    })
}

/// Frees a codec. NULL-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_codec_free(codec: *mut LdmaeCodec) {
    if !codec.is_null() {
        // SAFETY: a pointer from `ldmae_codec_open`, freed once.
        drop(unsafe { Box::from_raw(codec) });
    }
}

/// Opens the VMAE at `path` (a pack or a `.pth` checkpoint; NULL: the embedded photo VMAE).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_vmae_open(
    path_: *const c_char,
    opts: *const LdmaeOptions,
    out: *mut *mut LdmaeVmae,
) -> LdmaeStatus {
    guard(|| {
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = std::ptr::null_mut();
        let (device, threads) = unsafe { configure(opts) }?;
        let vmae = threads.run(|| match unsafe { path(path_, "path") }? {
            Some(p) => Ok::<_, Failure>(Vmae::load(&*ldmae_core::weights::open_vmae(&p)?, &device)?),
            None => Ok(Vmae::load(&ldmae_core::weights::embedded::photo_vmae()?, &device)?),
        })?;
        *out = Box::into_raw(Box::new(LdmaeVmae { vmae, threads }));
        Ok(())
    })
}

/// The model's native image side (256 for f8d16); 0 for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_vmae_image_size(vmae: *const LdmaeVmae) -> u32 {
    // SAFETY: NULL or a handle from `ldmae_vmae_open`.
    unsafe { vmae.as_ref() }.map_or(0, |v| v.vmae.config().image_size as u32)
}

/// The latent shape (channels, height, width) into `shape[3]`; zeros for a NULL handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_vmae_latent_shape(vmae: *const LdmaeVmae, shape: *mut u32) {
    if shape.is_null() {
        return;
    }
    // SAFETY: NULL or a handle; `shape` has room for 3 values.
    let dims = unsafe { vmae.as_ref() }.map_or([0; 3], |v| {
        let c = v.vmae.config();
        [c.latent_channels as u32, c.grid() as u32, c.grid() as u32]
    });
    unsafe { std::ptr::copy_nonoverlapping(dims.as_ptr(), shape, 3) };
}

/// Encodes one image of the native size to its posterior mean, written as float32 CHW into
/// `latent`, which holds at least `latent_len` floats (channels × height × width needed).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_vmae_encode(
    vmae: *mut LdmaeVmae,
    pixels: *const u8,
    width: u32,
    height: u32,
    stride: u32,
    format: PixelFormatCode,
    latent: *mut f32,
    latent_len: usize,
) -> LdmaeStatus {
    guard(|| {
        let handle = unsafe { non_null(vmae, "vmae") }?;
        let c = *handle.vmae.config();
        let image = unsafe { import_image(pixels, width, height, stride, format) }?;
        if (image.width, image.height) != (c.image_size, c.image_size) {
            return Err(invalid(format!(
                "a {width}x{height} image for a VMAE of fixed input size {s}x{s}",
                s = c.image_size
            )));
        }
        let needed = c.latent_channels * c.grid() * c.grid();
        if latent.is_null() || latent_len < needed {
            return Err(invalid(format!("latent holds {latent_len} floats; {needed} are needed (or it is NULL)")));
        }
        let values = handle.threads.run(|| {
            let x = ldmae_core::io::image::images_to_tensor(&[image], &handle.vmae.device())?;
            ldmae_core::io::image::tensor_values(handle.vmae.encode(x)?.mean, "encoded latent")
        })?;
        // SAFETY: `latent` has room for `latent_len ≥ needed` floats.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), latent, needed) };
        Ok(())
    })
}

/// Decodes one float32 CHW latent of exactly `latent_len` = channels × height × width values to
/// an image in `format` (free with `ldmae_image_free`), converted as the official code does.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_vmae_decode(
    vmae: *mut LdmaeVmae,
    latent: *const f32,
    latent_len: usize,
    format: PixelFormatCode,
    out: *mut LdmaeImage,
) -> LdmaeStatus {
    guard(|| {
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = empty_image();
        let handle = unsafe { non_null(vmae, "vmae") }?;
        let pixel = pixel_format(format)?;
        let c = *handle.vmae.config();
        let (ch, g) = (c.latent_channels, c.grid());
        if latent.is_null() || latent_len != ch * g * g {
            return Err(invalid(format!("latent has {latent_len} floats; a {ch}x{g}x{g} latent is {}", ch * g * g)));
        }
        // SAFETY: `latent` holds `latent_len` floats.
        let values = unsafe { std::slice::from_raw_parts(latent, latent_len) }.to_vec();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Failure(LDMAE_NUMERIC, "latent contains NaN or infinite values".into()));
        }
        let images = handle.threads.run(|| {
            let z = Tensor::<4>::from_data(TensorData::new(values, [1, ch, g, g]), &handle.vmae.device());
            tensor_to_images(handle.vmae.decode(z)?)
        })?;
        *out = export_image(&images[0], pixel, format);
        Ok(())
    })
}

/// Frees a VMAE. NULL-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_vmae_free(vmae: *mut LdmaeVmae) {
    if !vmae.is_null() {
        // SAFETY: a pointer from `ldmae_vmae_open`, freed once.
        drop(unsafe { Box::from_raw(vmae) });
    }
}

/// Opens a generator: a DiT pack and the VMAE that decodes its latents (a pack or a checkpoint);
/// both NULL: the embedded Fashion-MNIST demo models.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_generator_open(
    dit_path: *const c_char,
    vmae_path: *const c_char,
    opts: *const LdmaeOptions,
    out: *mut *mut LdmaeGenerator,
) -> LdmaeStatus {
    guard(|| {
        let out = unsafe { non_null_mut(out, "out") }?;
        *out = std::ptr::null_mut();
        let paths = unsafe { (path(dit_path, "dit_path")?, path(vmae_path, "vmae_path")?) };
        let (device, threads) = unsafe { configure(opts) }?;
        let generator = threads.run(|| match paths {
            (None, None) => Ok(Generator::fashion_demo(&device)?),
            (Some(dit), Some(vmae)) => {
                let dit = Dit::load(&*ldmae_core::weights::open_dit(&dit, None)?, &device)?;
                Ok(Generator::new(dit, Vmae::load(&*ldmae_core::weights::open_vmae(&vmae)?, &device)?)?)
            }
            _ => Err(invalid("give both dit_path and vmae_path, or neither (the embedded demo)")),
        })?;
        *out = Box::into_raw(Box::new(LdmaeGenerator { generator, threads }));
        Ok(())
    })
}

/// Generates one image per class into `out[0..count)` (RGB8, tightly packed; free each with
/// `ldmae_image_free`) from noise drawn from `seed`. `steps` 0 and `cfg` <= 0 mean the DiT
/// pack's recorded schedule (else the official settings). Equals `ldmae sample` with the same
/// models, classes and seed. On failure every `out[i]` is empty.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn ldmae_generate(
    generator: *mut LdmaeGenerator,
    classes: *const i32,
    count: u32,
    seed: u64,
    steps: u32,
    cfg: f32,
    progress: LdmaeProgress,
    user: *mut c_void,
    out: *mut LdmaeImage,
) -> LdmaeStatus {
    guard(|| {
        if out.is_null() || classes.is_null() {
            return Err(invalid("classes or out is NULL"));
        }
        if count == 0 {
            return Err(invalid("count is 0"));
        }
        // SAFETY: `out` and `classes` hold `count` elements.
        let outs = unsafe { std::slice::from_raw_parts_mut(out, count as usize) };
        outs.iter_mut().for_each(|o| *o = empty_image());
        let handle = unsafe { non_null(generator, "generator") }?;
        let labels: Vec<usize> = unsafe { std::slice::from_raw_parts(classes, count as usize) }
            .iter()
            .map(|&c| usize::try_from(c).map_err(|_| invalid(format!("class {c} is negative"))))
            .collect::<Result<_, _>>()?;
        let overrides = SamplerOverrides {
            steps: (steps > 0).then_some(steps as usize),
            cfg_scale: (cfg > 0.0).then_some(cfg),
            ..Default::default()
        };
        let g = &handle.generator;
        let progress = CProgress { callback: progress, user };
        let images = handle.threads.run(|| g.generate(&labels, seed, &g.sampling(&overrides), progress))?;
        for (o, image) in outs.iter_mut().zip(&images) {
            *o = export_image(image, PixelFormat::Rgb8, LDMAE_RGB8);
        }
        Ok(())
    })
}

/// Frees a generator. NULL-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_generator_free(generator: *mut LdmaeGenerator) {
    if !generator.is_null() {
        // SAFETY: a pointer from `ldmae_generator_open`, freed once.
        drop(unsafe { Box::from_raw(generator) });
    }
}

/// Frees the pixels of an image the library filled and empties it; NULL-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_image_free(image: *mut LdmaeImage) {
    // SAFETY: NULL or an image filled by the library (its fields unchanged).
    let Some(image) = (unsafe { image.as_mut() }) else { return };
    if !image.pixels.is_null() {
        let len = image.stride as usize * image.height as usize;
        // SAFETY: the pixels were a boxed slice of `stride · height` bytes.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(image.pixels, len)) });
    }
    *image = empty_image();
}

/// Frees the bytes of a buffer the library filled and empties it; NULL-safe.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ldmae_buffer_free(buffer: *mut LdmaeBuffer) {
    // SAFETY: NULL or a buffer filled by the library (its fields unchanged).
    let Some(buffer) = (unsafe { buffer.as_mut() }) else { return };
    if !buffer.data.is_null() {
        // SAFETY: the bytes were a boxed slice of `len` bytes.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(buffer.data, buffer.len)) });
    }
    *buffer = LdmaeBuffer { data: std::ptr::null_mut(), len: 0 };
}

//! Device choice: the CPU backend (burn-flex by default, burn-ndarray with `--no-default-features
//! --features ndarray`), with the `wgpu` feature a GPU through wgpu (Vulkan, Metal, DX12,
//! WebGPU) and with the `cuda` feature an NVIDIA GPU through CUDA, in f16 or f32.
//!
//! [`select`] picks the best device: a CUDA device in f16 (feature `cuda`, when the NVIDIA driver
//! reports one), else a hardware wgpu GPU with shader-f16 in f16, else that GPU in f32, else the
//! CPU in f32, and says why ([`Selected::reason`]). A choice can be forced, and a pack of
//! either precision loads onto a device of either precision (weights are widened or rounded once).

use crate::error::{Error, Result};
#[cfg(all(feature = "flex", feature = "std"))]
pub use crate::kernels::isa::{CpuKernels, CpuLevel, cpu_kernels};
use crate::precision::Precision;
use alloc::format;
use alloc::string::{String, ToString};
use burn::tensor::{Device, FloatDType, Tensor};
use core::fmt;
use core::str::FromStr;

#[cfg(not(any(feature = "flex", feature = "ndarray")))]
compile_error!("enable a CPU backend: the `flex` (default) or `ndarray` feature");

/// `a · b`, by the matrix product the models' linear layers run: on burn-flex in f32 the GEMM
/// named by [`cpu_kernels`], elsewhere burn's `matmul` (for benchmarks and checks).
pub fn matmul(a: Tensor<2>, b: Tensor<2>) -> Tensor<2> {
    #[cfg(all(feature = "flex", feature = "std"))]
    if let Some(product) = crate::kernels::linear(&a, &b, None) {
        return product;
    }
    a.matmul(b)
}

/// The CPU device of the enabled backend (flex when both are enabled), with its default f32.
#[allow(deprecated)] // burn 0.22 deprecates burn-ndarray in favour of flex; we keep it selectable.
pub fn cpu() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(not(feature = "flex"))]
    return Device::ndarray();
}

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// A hardware GPU through wgpu when there is one, else the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// wgpu on the graphics API it settles on for this platform.
    Wgpu,
    /// wgpu pinned to Vulkan (Linux, Android, Jetson, Windows).
    Vulkan,
    /// wgpu pinned to Metal (macOS, iOS).
    Metal,
    /// An NVIDIA GPU through CUDA (feature `cuda`).
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            "vulkan" => Ok(Self::Vulkan),
            "metal" => Ok(Self::Metal),
            "cuda" => Ok(Self::Cuda),
            _ => Err(Error::Device(format!("unknown device `{s}` (expected auto, cpu, wgpu, vulkan, metal or cuda)"))),
        }
    }
}

/// A configured device and why it was chosen.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The configured device.
    pub device: Device,
    /// What runs the models, e.g. `cpu (flex)` or `wgpu Vulkan: NVIDIA H200`.
    pub name: String,
    /// Whether that is the CPU backend (not a wgpu adapter, software ones included).
    pub cpu: bool,
    /// What the models compute in there.
    pub precision: Precision,
    /// Why this device and precision (what was tried and refused first).
    pub reason: String,
}

impl fmt::Display for Selected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {} ({})", self.name, self.precision, self.reason)
    }
}

/// Picks and configures a device. `precision: None` means f16 on a GPU that has shader-f16,
/// f32 otherwise (on the CPU f16 is only a storage format: slower, so never the default).
///
/// Precision is set once per device and process: asking for the other precision on a device that
/// already computed is an [`Error::Device`].
pub fn select(choice: DeviceChoice, precision: Option<Precision>) -> Result<Selected> {
    match choice {
        DeviceChoice::Cpu => on_cpu(precision, "requested"),
        #[cfg(feature = "cuda")]
        DeviceChoice::Auto if cuda_devices() > 0 => cuda::configure(precision, "the first CUDA device"),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => match cuda_devices() {
            0 => Err(Error::Device("no CUDA device: the NVIDIA driver (libcuda) is missing or reports none".into())),
            _ => cuda::configure(precision, "requested"),
        },
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda => Err(Error::Device("this build has no CUDA support: enable the `cuda` feature".into())),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Auto => match gpu::hardware_adapters() {
            Err(why) => on_cpu(precision, &why),
            Ok(()) => match gpu::open(gpu::Api::Auto) {
                Ok(gpu) if !gpu.software => gpu.configure(precision, true),
                Ok(gpu) => on_cpu(precision, &format!("wgpu settled on {}, a software renderer or OpenGL", gpu.name)),
                Err(e) => on_cpu(precision, &format!("no wgpu adapter: {e}")),
            },
        },
        #[cfg(not(feature = "wgpu"))]
        DeviceChoice::Auto => on_cpu(precision, "built without the `wgpu` feature"),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu | DeviceChoice::Vulkan | DeviceChoice::Metal => {
            let api = match choice {
                DeviceChoice::Vulkan => gpu::Api::Vulkan,
                DeviceChoice::Metal => gpu::Api::Metal,
                _ => gpu::Api::Auto,
            };
            gpu::open(api).map_err(Error::Device)?.configure(precision, false)
        }
        #[cfg(not(feature = "wgpu"))]
        DeviceChoice::Wgpu | DeviceChoice::Vulkan | DeviceChoice::Metal => {
            Err(Error::Device("this build has no GPU support: enable the `wgpu` feature".into()))
        }
    }
}

/// CUDA devices the NVIDIA driver reports: 0 without the `cuda` feature or without a driver.
pub fn cuda_devices() -> usize {
    #[cfg(feature = "cuda")]
    return cuda::device_count();
    #[cfg(not(feature = "cuda"))]
    0
}

/// [`select`] with the choice in `LDMAE_DEVICE` (default `auto`) and the precision in
/// `LDMAE_DTYPE` (default: per device), as the examples use it.
#[cfg(feature = "std")]
pub fn select_from_env() -> Result<Selected> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let choice = var("LDMAE_DEVICE").map_or(Ok(DeviceChoice::Auto), |v| v.parse())?;
    select(choice, var("LDMAE_DTYPE").map(|v| v.parse()).transpose()?)
}

/// Runs `work` on `selected`. When it fails in f16 with a non-finite result or a weight beyond
/// f16's range, runs it again in f32 on the CPU after telling `warn` why (on a GPU), or asks for
/// f32 (on the CPU, where f16 was requested explicitly).
pub fn run_with_f32_fallback<T>(
    selected: &Selected,
    mut work: impl FnMut(&Device) -> Result<T>,
    warn: impl FnOnce(&str),
) -> Result<T> {
    match work(&selected.device) {
        Err(e @ (Error::NonFinite { .. } | Error::F16Range(_))) if selected.precision == Precision::F16 => {
            if selected.cpu {
                return Err(Error::Device(format!("{e} in f16 on the CPU: run again with --dtype f32")));
            }
            let retry = select(DeviceChoice::Cpu, Some(Precision::F32))?;
            warn(&format!("{e} in f16 on {}; running again on {retry}", selected.name));
            work(&retry.device)
        }
        result => result,
    }
}

fn on_cpu(precision: Option<Precision>, why: &str) -> Result<Selected> {
    let precision = precision.unwrap_or(Precision::F32);
    let mut device = cpu();
    set_precision(&mut device, precision)?;
    let name = if cfg!(feature = "flex") { "cpu (flex)" } else { "cpu (ndarray)" };
    Ok(Selected { device, name: name.into(), cpu: true, precision, reason: why.into() })
}

fn float_dtype(precision: Precision) -> FloatDType {
    match precision {
        Precision::F16 => FloatDType::F16,
        Precision::F32 => FloatDType::F32,
    }
}

/// Sets the device's float type, or checks that it already has it.
fn set_precision(device: &mut Device, precision: Precision) -> Result<()> {
    match device.configure(float_dtype(precision)) {
        Ok(()) => Ok(()),
        Err(_) if device.settings().float_dtype == float_dtype(precision) => Ok(()),
        Err(e) => Err(Error::Device(e.to_string())),
    }
}

/// The float type a device computes in.
pub fn precision_of(device: &Device) -> Precision {
    match device.settings().float_dtype {
        FloatDType::F16 | FloatDType::BF16 => Precision::F16,
        _ => Precision::F32,
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::{Precision, Selected, set_precision};
    use crate::error::Result;
    use burn::tensor::Device;

    /// CUDA devices the NVIDIA driver reports: 0 without a driver (asked without loading it when
    /// it is absent, so this never panics).
    pub(super) fn device_count() -> usize {
        // SAFETY: only tries to load the driver library by its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return 0;
        }
        cudarc::driver::CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
    }

    /// CUDA device 0 in `precision` (default f16: every CUDA GPU computes in half precision).
    pub(super) fn configure(precision: Option<Precision>, why: &str) -> Result<Selected> {
        let precision = precision.unwrap_or(Precision::F16);
        let mut device = Device::cuda(0);
        set_precision(&mut device, precision)?;
        Ok(Selected { device, name: "cuda:0".into(), cpu: false, precision, reason: why.into() })
    }
}

#[cfg(feature = "wgpu")]
mod gpu {
    use super::{Precision, Selected, set_precision};
    use crate::error::{Error, Result};
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use burn::tensor::Device;
    use burn::tensor::wgpu::{WgpuBackend, wgpu};
    use std::sync::Mutex;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Api {
        Auto,
        Vulkan,
        Metal,
    }

    /// An initialised wgpu runtime.
    #[derive(Clone)]
    pub(super) struct Gpu {
        device: Device,
        pub(super) name: String,
        /// A CPU implementation of the graphics API (lavapipe, llvmpipe, WARP), or OpenGL, on
        /// which wgpu has no f16 and compute is unreliable.
        pub(super) software: bool,
        shader_f16: bool,
    }

    /// Checks, without opening a device, that wgpu sees a hardware adapter on the APIs `auto`
    /// uses (Vulkan, Metal, DX12); the error says what it found instead.
    pub(super) fn hardware_adapters() -> core::result::Result<(), String> {
        if wgpu::Instance::enabled_backend_features().is_empty() {
            return Err("this platform has no wgpu backend".into());
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let adapters = block_on(wgpu::Instance::new(desc).enumerate_adapters(wgpu::Backends::PRIMARY));
        let infos: Vec<wgpu::AdapterInfo> = adapters.iter().map(|a| a.get_info()).collect();
        if infos.iter().any(|i| i.device_type != wgpu::DeviceType::Cpu) {
            return Ok(());
        }
        let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
        Err(match names.as_slice() {
            [] => "no wgpu adapter (Vulkan, Metal or DX12)".into(),
            _ => format!(
                "the only wgpu adapters, {}, are software renderers: the CPU backend is faster",
                names.join(", ")
            ),
        })
    }

    /// Runs a future that completes without waiting on anything else (wgpu's native adapter
    /// enumeration) to its end.
    fn block_on<F: core::future::Future>(future: F) -> F::Output {
        let mut future = core::pin::pin!(future);
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        loop {
            if let core::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::yield_now();
        }
    }

    /// Runtimes opened so far: wgpu initialises a runtime once per process.
    static OPENED: Mutex<Vec<(Api, Gpu)>> = Mutex::new(Vec::new());

    pub(super) fn open(api: Api) -> core::result::Result<Gpu, String> {
        let mut opened = OPENED.lock().map_err(|_| "a previous wgpu initialisation panicked".to_string())?;
        if let Some((_, gpu)) = opened.iter().find(|(a, _)| *a == api) {
            return Ok(gpu.clone());
        }
        let backend = match api {
            Api::Auto => WgpuBackend::Auto,
            Api::Vulkan => WgpuBackend::Vulkan,
            Api::Metal => WgpuBackend::Metal,
        };
        let (device, setup) =
            Device::wgpu_options().graphics_api(backend).init_with_setup().map_err(|e| e.to_string())?;
        let info = setup.adapter.get_info();
        let gpu = Gpu {
            device,
            name: format!("wgpu {:?}: {}", setup.backend, info.name),
            software: info.device_type == wgpu::DeviceType::Cpu || setup.backend == wgpu::Backend::Gl,
            shader_f16: setup.device.features().contains(wgpu::Features::SHADER_F16),
        };
        opened.push((api, gpu.clone()));
        Ok(gpu)
    }

    impl Gpu {
        pub(super) fn configure(mut self, precision: Option<Precision>, auto: bool) -> Result<Selected> {
            let chosen = if auto { "the first hardware wgpu adapter" } else { "requested" };
            let (precision, reason) = match (precision, self.shader_f16) {
                (Some(Precision::F16), false) => {
                    return Err(Error::Device(format!("{} has no shader-f16: use f32", self.name)));
                }
                (Some(p), _) => (p, chosen.to_string()),
                (None, true) => (Precision::F16, format!("{chosen}; it has shader-f16")),
                (None, false) => (Precision::F32, format!("{chosen}; it lacks shader-f16, so f32")),
            };
            set_precision(&mut self.device, precision)?;
            Ok(Selected { device: self.device, name: self.name, cpu: false, precision, reason })
        }
    }
}

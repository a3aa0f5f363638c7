//! The weight pack: one burnpack container holding a model's configuration, its latent
//! statistics (DiT) and its named tensors in f16 or f32, or with matrices and convolutions in
//! int8 / int4 ([`Storage`], schemes in `quant`).
//!
//! Tensors carry the official state-dict names (`blocks.3.attn.qkv.weight`, …) in the model
//! layout of [`WeightSource`]: linear weights `[in, out]`, i.e. transposed relative to PyTorch;
//! everything else keeps the PyTorch layout. The metadata keys are:
//!
//! | key | value |
//! |---|---|
//! | `ldmae.format` | `1` for float packs, `2` for quantised ones (older readers refuse them) |
//! | `ldmae.kind` | `vmae` or `dit` |
//! | `ldmae.dtype` | `f16` or `f32` (every tensor has this type), `int8` or `int4` (the rest f16) |
//! | `ldmae.quantized` | quantised packs: the model-layout shape of each quantised tensor, by name; its codes are stored under the name (`I8` for int8, `U8` `[blocks, 16]` for int4), its f16 scales under `NAME@scales` |
//! | `ldmae.config` | the `VmaeConfig` or `DitConfig` as JSON |
//! | `ldmae.latent_stats` | DiT only: [`LatentStats`] as JSON |
//! | `ldmae.sampling` | DiT only, optional: recommended [`SamplerConfig`] as JSON |
//! | `ldmae.source` | free text: what the pack was converted from |
//! | `ldmae.checksums` | CRC-32 of each tensor's stored bytes, by name: damage is an error |

use super::quant::{self, Quantized, Storage};
use crate::diffusion::{LatentStats, SamplerConfig};
use crate::error::{Error, Result};
use crate::io::floats::DeviceFloat;
use crate::model::{DitConfig, ModelSpec, VmaeConfig, WeightSource};
use crate::precision::Precision;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use burn::tensor::TensorData;
use burn_pack::{Bytes, DType};
use core::fmt;
use half::f16;
use serde::Serialize;

/// Newest version of `ldmae.format`: written for quantised packs; `1` (float packs) still is
/// written and read.
pub const FORMAT_VERSION: &str = "2";

/// The `ldmae.format` of packs without quantised tensors, which readers before int8 also read.
const FLOAT_FORMAT_VERSION: &str = "1";

/// Suffix of the tensor holding a quantised tensor's scales.
const SCALES: &str = "@scales";

fn burn_dtype(p: Precision) -> DType {
    match p {
        Precision::F16 => DType::F16,
        Precision::F32 => DType::F32,
    }
}

/// A parsed weight pack. Tensor bytes stay where they are (memory, file or a `'static` slice)
/// until used.
pub struct Pack {
    spec: ModelSpec,
    storage: Storage,
    source: Option<String>,
    tensors: BTreeMap<String, burn_pack::Tensor>,
    checksums: BTreeMap<String, u32>,
    /// Model-layout shapes of the quantised tensors.
    quantized: BTreeMap<String, Vec<usize>>,
}

/// Element types as packs and errors spell them.
fn dtype_name(dtype: DType) -> String {
    match dtype {
        DType::F32 => "f32".into(),
        DType::F16 => "f16".into(),
        DType::I8 => "i8 (int8 codes)".into(),
        DType::U8 => "u8 (int4 codes)".into(),
        other => format!("{other:?}"),
    }
}

/// Runs `f` on little-endian stored values as `T` (in place when aligned, else copied; packs
/// are little-endian like every target this crate builds for).
fn with_values<T: bytemuck::Pod, R>(bytes: &[u8], f: impl FnOnce(&[T]) -> R) -> R {
    match bytemuck::try_cast_slice(bytes) {
        Ok(values) => f(values),
        Err(_) => f(&bytemuck::pod_collect_to_vec::<u8, T>(bytes)),
    }
}

fn pack_err(e: burn_pack::Error) -> Error {
    Error::PackFormat(e.to_string())
}

impl Pack {
    /// Parses a pack held in memory, copying it; see [`Self::from_static`] and [`Self::from_vec`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_vec(bytes.to_vec())
    }

    /// Parses a pack, taking ownership of its bytes (no copy).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Self> {
        Self::from_reader(burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(pack_err)?)
    }

    /// Parses a pack that lives for the whole program (`include_bytes!`, a memory-mapped file):
    /// tensors are read from it in place, never copied as a whole.
    pub fn from_static(bytes: &'static [u8]) -> Result<Self> {
        let shared = Bytes::from_shared(bytes::Bytes::from_static(bytes), burn::tensor::AllocationProperty::Other);
        Self::from_reader(burn_pack::Reader::from_bytes(shared).map_err(pack_err)?)
    }

    /// Opens a pack file; tensor data is read lazily.
    #[cfg(feature = "std")]
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        if let Err(e) = std::fs::metadata(path) {
            return Err(Error::io(path, e));
        }
        let reader = burn_pack::Reader::from_file_exact(path)
            .map_err(|e| Error::PackFormat(format!("{}: {e}", path.display())))?;
        Self::from_reader(reader)
    }

    fn from_reader(reader: burn_pack::Reader) -> Result<Self> {
        let meta = reader.metadata().clone();
        let get = |key: &str| {
            meta.get(key).ok_or_else(|| Error::PackMetadata {
                key: key.into(),
                reason: "missing (not an ldmae weight pack?)".into(),
            })
        };
        let version = get("ldmae.format")?;
        if version != FORMAT_VERSION && version != FLOAT_FORMAT_VERSION {
            return Err(Error::PackMetadata {
                key: "ldmae.format".into(),
                reason: format!(
                    "unsupported version `{version}` (this build reads {FLOAT_FORMAT_VERSION} and {FORMAT_VERSION})"
                ),
            });
        }
        let dtype = get("ldmae.dtype")?;
        let storage: Storage = dtype.parse().map_err(|_| Error::PackMetadata {
            key: "ldmae.dtype".into(),
            reason: format!("unknown dtype `{dtype}` (expected f16, f32, int8 or int4)"),
        })?;
        let spec = parse_spec(get("ldmae.kind")?, &|k| get(k).cloned(), meta.get("ldmae.sampling"))?;
        let checksums: BTreeMap<String, u32> = json("ldmae.checksums", get("ldmae.checksums")?)?;
        let quantized: BTreeMap<String, Vec<usize>> = match storage.is_quantized() {
            true => json("ldmae.quantized", get("ldmae.quantized")?)?,
            false => BTreeMap::new(),
        };
        let tensors: BTreeMap<String, burn_pack::Tensor> =
            reader.into_tensors().map_err(pack_err)?.into_iter().map(|t| (t.name.clone(), t)).collect();
        for (name, shape) in &quantized {
            // The declared shape must fit the stored bytes, so that reading never trusts it alone.
            let fits = |(codes, scales): (usize, usize)| {
                let len = |n: &str| tensors.get(n).map(burn_pack::Tensor::byte_len);
                len(name) == Some(codes) && len(&format!("{name}{SCALES}")) == Some(2 * scales)
            };
            if !quant::quantizable(name, shape) || !quant::stored_sizes(storage, shape).is_some_and(fits) {
                return Err(Error::PackMetadata {
                    key: "ldmae.quantized".into(),
                    reason: format!("`{name}` {shape:?} is not a quantisable tensor with matching codes and scales"),
                });
            }
        }
        Ok(Self { spec, storage, source: meta.get("ldmae.source").cloned(), tensors, checksums, quantized })
    }

    /// Names and model-layout shapes of all tensors, sorted by name.
    pub fn tensor_shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors.iter().filter(|(n, _)| !n.ends_with(SCALES)).map(|(n, t)| {
            let shape = self.quantized.get(n).map_or(t.shape.as_slice(), Vec::as_slice);
            (n.as_str(), shape)
        })
    }

    /// Total element count of all tensors (the model's parameters).
    pub fn num_elements(&self) -> usize {
        self.tensor_shapes().map(|(_, shape)| shape.iter().product::<usize>()).sum()
    }

    /// The model the pack is for.
    pub fn model(&self) -> &ModelSpec {
        &self.spec
    }

    /// How the tensors are stored.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// What the pack was converted from (free text).
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The same pack with other recommended sampling settings (DiT packs only), e.g. the
    /// schedule a distilled model was trained for.
    pub fn with_sampling(&self, sampling: SamplerConfig) -> Result<Vec<u8>> {
        let ModelSpec::Dit { config, stats, .. } = &self.spec else {
            return Err(Error::WrongKind { expected: "dit", found: self.spec.kind().into() });
        };
        let spec = ModelSpec::Dit { config: *config, stats: stats.clone(), sampling: Some(sampling) };
        let writer = PackWriter {
            spec,
            storage: self.storage,
            source: self.source.clone().unwrap_or_default(),
            tensors: self.tensors.values().cloned().collect(),
            checksums: self.checksums.clone(),
            quantized: self.quantized.clone(),
        };
        writer.to_bytes()
    }

    /// Reads one tensor as f32 values, checking its shape, element type and checksum.
    pub fn read_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.read_as::<f32>(name, shape)
    }

    /// The intact stored bytes of tensor `name`, which must have element type `dtype`.
    fn stored(&self, name: &str, dtype: DType, shape: &[usize]) -> Result<Bytes> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.into()))?;
        if t.shape.as_slice() != shape {
            return Err(Error::TensorShape {
                name: name.into(),
                expected: shape.to_vec(),
                found: t.shape.as_slice().to_vec(),
            });
        }
        if t.dtype != dtype {
            return Err(Error::TensorDtype {
                name: name.into(),
                expected: dtype_name(dtype),
                found: dtype_name(t.dtype),
            });
        }
        let bytes = t.to_bytes().map_err(|e| Error::PackFormat(format!("tensor `{name}`: {e}")))?;
        if self.checksums.get(name) != Some(&crc32fast::hash(&bytes)) {
            return Err(Error::PackFormat(format!("tensor `{name}` is damaged (checksum mismatch)")));
        }
        let width = if dtype == DType::F32 {
            4
        } else if dtype == DType::F16 {
            2
        } else {
            1
        };
        if bytes.len() != shape.iter().product::<usize>() * width {
            return Err(Error::PackFormat(format!("tensor `{name}` has {} bytes for shape {shape:?}", bytes.len())));
        }
        Ok(bytes)
    }

    /// Tensor `name` of model-layout `shape` as `T` values: floats converted once, integers
    /// dequantised straight into `T`.
    fn read_as<T: DeviceFloat>(&self, name: &str, shape: &[usize]) -> Result<Vec<T>> {
        if let Some(found) = self.quantized.get(name) {
            if found != shape {
                return Err(Error::TensorShape { name: name.into(), expected: shape.to_vec(), found: found.clone() });
            }
            // Checked against the stored bytes when the pack was opened.
            let (_, n_scales) = quant::stored_sizes(self.storage, shape).unwrap_or_default();
            let (dtype, codes_shape) = match self.storage {
                Storage::Int4 => (DType::U8, alloc::vec![n_scales, quant::BLOCK / 2]),
                _ => (DType::I8, shape.to_vec()),
            };
            let codes = self.stored(name, dtype, &codes_shape)?;
            let scales = self.stored(&format!("{name}{SCALES}"), DType::F16, &[n_scales])?;
            return with_values(&scales, |scales| quant::dequantize(self.storage, shape, &codes, scales));
        }
        let float = self.storage.float();
        let bytes = self.stored(name, burn_dtype(float), shape)?;
        let mut out = Vec::new();
        match float {
            Precision::F16 => with_values(&bytes, |v| T::extend_from_f16(&mut out, v)),
            Precision::F32 => with_values(&bytes, |v| T::extend_from_f32(&mut out, v)),
        }
        Ok(out)
    }
}

/// Metadata value `key` parsed from JSON.
fn json<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::PackMetadata { key: key.into(), reason: e.to_string() })
}

fn parse_spec(kind: &str, get: &dyn Fn(&str) -> Result<String>, sampling: Option<&String>) -> Result<ModelSpec> {
    match kind {
        "vmae" => {
            let config: VmaeConfig = json("ldmae.config", &get("ldmae.config")?)?;
            config.validate()?;
            Ok(ModelSpec::Vmae(config))
        }
        "dit" => {
            let config: DitConfig = json("ldmae.config", &get("ldmae.config")?)?;
            config.validate()?;
            let stats: LatentStats = json("ldmae.latent_stats", &get("ldmae.latent_stats")?)?;
            stats.validate(config.in_channels)?;
            let sampling = sampling.map(|s| json("ldmae.sampling", s)).transpose()?;
            Ok(ModelSpec::Dit { config, stats, sampling })
        }
        other => Err(Error::PackMetadata { key: "ldmae.kind".into(), reason: format!("unknown model kind `{other}`") }),
    }
}

/// Builds a pack from f32 tensors, storing them as the chosen [`Storage`].
pub struct PackWriter {
    spec: ModelSpec,
    storage: Storage,
    source: String,
    tensors: Vec<burn_pack::Tensor>,
    checksums: BTreeMap<String, u32>,
    quantized: BTreeMap<String, Vec<usize>>,
}

impl PackWriter {
    /// Starts a pack for `model`, storing tensors as `storage` (a [`Precision`] or int8 / int4).
    pub fn new(spec: ModelSpec, storage: impl Into<Storage>, source: impl Into<String>) -> Self {
        Self {
            spec,
            storage: storage.into(),
            source: source.into(),
            tensors: Vec::new(),
            checksums: BTreeMap::new(),
            quantized: BTreeMap::new(),
        }
    }

    /// A pack of every tensor of `weights` (in the model layout), described by `spec`.
    pub fn from_weights(
        weights: &dyn WeightSource,
        spec: ModelSpec,
        storage: impl Into<Storage>,
        source: impl Into<String>,
    ) -> Result<Self> {
        let mut writer = Self::new(spec, storage, source);
        for name in weights.tensor_names() {
            let shape = weights.tensor_shape(&name).unwrap_or_default();
            let values = weights.read_tensor(&name, &shape)?;
            writer.add(name, &shape, &values)?;
        }
        Ok(writer)
    }

    /// Adds a tensor given in the model layout (see [`WeightSource`]); with int8 / int4 storage,
    /// matrices and convolutions are quantised.
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], values: &[f32]) -> Result<()> {
        let name = name.into();
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::TensorShape { name, expected: shape.to_vec(), found: alloc::vec![values.len()] });
        }
        if self.storage.is_quantized() && quant::quantizable(&name, shape) {
            if values.iter().any(|v| !v.is_finite()) {
                return Err(Error::InputValue {
                    what: "weights to quantise",
                    reason: format!("`{name}` holds NaN or infinity"),
                });
            }
            let Quantized { codes, scales, codes_shape } = quant::quantize(self.storage, shape, values);
            if scales.iter().any(|s| !s.is_finite()) {
                return Err(beyond_f16(&name, "a quantisation scale"));
            }
            let dtype = if self.storage == Storage::Int4 { DType::U8 } else { DType::I8 };
            self.push(format!("{name}{SCALES}"), DType::F16, &[scales.len()], f16_bytes(&scales));
            self.push(name.clone(), dtype, &codes_shape, codes);
            self.quantized.insert(name, shape.to_vec());
            return Ok(());
        }
        let bytes: Vec<u8> = match self.storage.float() {
            Precision::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::F16 => {
                let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
                if halves.iter().zip(values).any(|(h, v)| h.is_infinite() && v.is_finite()) {
                    return Err(beyond_f16(&name, "a value"));
                }
                f16_bytes(&halves)
            }
        };
        self.push(name, burn_dtype(self.storage.float()), shape, bytes);
        Ok(())
    }

    fn push(&mut self, name: String, dtype: DType, shape: &[usize], bytes: Vec<u8>) {
        self.checksums.insert(name.clone(), crc32fast::hash(&bytes));
        self.tensors.push(burn_pack::Tensor::new(name, dtype, shape.to_vec(), None, Bytes::from_bytes_vec(bytes)));
    }

    fn writer(self) -> Result<burn_pack::Writer> {
        let quantized = self.storage.is_quantized();
        let mut w = burn_pack::Writer::new(self.tensors)
            .with_metadata("ldmae.format", if quantized { FORMAT_VERSION } else { FLOAT_FORMAT_VERSION })
            .with_metadata("ldmae.kind", self.spec.kind())
            .with_metadata("ldmae.dtype", self.storage.as_str())
            .with_metadata("ldmae.source", &self.source)
            .with_metadata("ldmae.checksums", &to_json(&self.checksums)?);
        if quantized {
            w = w.with_metadata("ldmae.quantized", &to_json(&self.quantized)?);
        }
        match &self.spec {
            ModelSpec::Vmae(c) => w = w.with_metadata("ldmae.config", &to_json(c)?),
            ModelSpec::Dit { config, stats, sampling } => {
                w = w
                    .with_metadata("ldmae.config", &to_json(config)?)
                    .with_metadata("ldmae.latent_stats", &to_json(stats)?);
                if let Some(s) = sampling {
                    w = w.with_metadata("ldmae.sampling", &to_json(s)?);
                }
            }
        }
        Ok(w)
    }

    /// Serialises the pack.
    pub fn to_bytes(self) -> Result<Vec<u8>> {
        let bytes = self.writer()?.into_bytes().map_err(pack_err)?;
        Ok(bytes.to_vec())
    }

    /// Writes the pack to `path` (replacing any file there).
    #[cfg(feature = "std")]
    pub fn write_file(self, path: &std::path::Path) -> Result<()> {
        self.writer()?
            .auto_extension(false)
            .overwrite(true)
            .write_to_file(path)
            .map_err(|e| Error::Io { path: path.display().to_string(), reason: e.to_string() })
    }
}

/// The error for a finite weight of `name` that f16 storage would turn into infinity (beyond
/// ±65504 after rounding).
fn beyond_f16(name: &str, what: &str) -> Error {
    Error::InputValue {
        what: "weights to store in f16",
        reason: format!("`{name}` has {what} beyond f16's range (±65504): store it as f32"),
    }
}

fn f16_bytes(values: &[f16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Config(e.to_string()))
}

impl WeightSource for Pack {
    fn spec(&self) -> Result<ModelSpec> {
        Ok(self.spec.clone())
    }

    fn tensor_names(&self) -> Vec<String> {
        self.tensor_shapes().map(|(n, _)| n.to_string()).collect()
    }

    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        match self.quantized.get(name) {
            Some(shape) => Some(shape.clone()),
            None => self.tensors.get(name).filter(|_| !name.ends_with(SCALES)).map(|t| t.shape.as_slice().to_vec()),
        }
    }

    fn read_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.read_f32(name, shape)
    }

    fn read_data(&self, name: &str, shape: &[usize], precision: Precision) -> Result<TensorData> {
        Ok(match precision {
            Precision::F32 => TensorData::new(self.read_as::<f32>(name, shape)?, shape.to_vec()),
            Precision::F16 => TensorData::new(self.read_as::<f16>(name, shape)?, shape.to_vec()),
        })
    }
}

impl fmt::Display for Pack {
    /// What `ldmae info` prints: kind, precision, configuration, statistics, recorded sampling,
    /// source and size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ldmae weights: {} ({})", self.spec.kind(), self.storage)?;
        match &self.spec {
            ModelSpec::Vmae(c) => writeln!(f, "config: {c:?}")?,
            ModelSpec::Dit { config, stats, sampling } => {
                writeln!(f, "config: {config:?}")?;
                writeln!(f, "latent mean: {:?}\nlatent std: {:?}", stats.mean, stats.std)?;
                if let Some(s) = sampling {
                    writeln!(f, "recommended sampling: {s:?}")?;
                }
            }
        }
        if let Some(src) = &self.source {
            writeln!(f, "source: {src}")?;
        }
        write!(f, "{} tensors, {} parameters", self.tensor_shapes().count(), self.num_elements())?;
        if !self.quantized.is_empty() {
            write!(f, " ({} matrices and convolutions {})", self.quantized.len(), self.storage)?;
        }
        Ok(())
    }
}

//! The weight pack: one burnpack container holding a model's configuration, its latent
//! statistics (DiT) and its named tensors in f16 or f32.
//!
//! Tensors carry the official state-dict names (`blocks.3.attn.qkv.weight`, …) in the model
//! layout of [`WeightSource`]: linear weights `[in, out]`, i.e. transposed relative to PyTorch;
//! everything else keeps the PyTorch layout. The metadata keys are:
//!
//! | key | value |
//! |---|---|
//! | `ldmae.format` | `1` |
//! | `ldmae.kind` | `vmae` or `dit` |
//! | `ldmae.dtype` | `f16` or `f32` (every tensor has this type) |
//! | `ldmae.config` | the `VmaeConfig` or `DitConfig` as JSON |
//! | `ldmae.latent_stats` | DiT only: [`LatentStats`] as JSON |
//! | `ldmae.sampling` | DiT only, optional: recommended [`SamplerConfig`] as JSON |
//! | `ldmae.source` | free text: what the pack was converted from |
//! | `ldmae.checksums` | CRC-32 of each tensor's stored bytes, by name: damage is an error |

use crate::diffusion::{LatentStats, SamplerConfig};
use crate::error::{Error, Result};
use crate::io::floats::Stored;
use crate::model::{DitConfig, ModelSpec, VmaeConfig, WeightSource};
use crate::precision::Precision;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use burn_pack::{Bytes, DType};
use core::fmt;
use serde::Serialize;

/// Version written to and accepted from `ldmae.format`.
pub const FORMAT_VERSION: &str = "1";

fn burn_dtype(p: Precision) -> DType {
    match p {
        Precision::F16 => DType::F16,
        Precision::F32 => DType::F32,
    }
}

/// A parsed weight pack. Tensor bytes stay where they are (memory or file) until used.
pub struct Pack {
    spec: ModelSpec,
    dtype: Precision,
    source: Option<String>,
    tensors: BTreeMap<String, burn_pack::Tensor>,
    checksums: BTreeMap<String, u32>,
}

fn pack_err(e: burn_pack::Error) -> Error {
    Error::PackFormat(e.to_string())
}

impl Pack {
    /// Parses a pack held in memory (e.g. from `include_bytes!`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).map_err(pack_err)?;
        Self::from_reader(reader)
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
        if version != FORMAT_VERSION {
            return Err(Error::PackMetadata {
                key: "ldmae.format".into(),
                reason: format!("unsupported version `{version}` (this build reads {FORMAT_VERSION})"),
            });
        }
        let dtype = get("ldmae.dtype")?;
        let dtype: Precision = dtype.parse().map_err(|_| Error::PackMetadata {
            key: "ldmae.dtype".into(),
            reason: format!("unknown dtype `{dtype}` (expected f16 or f32)"),
        })?;
        let spec = parse_spec(get("ldmae.kind")?, &|k| get(k).cloned(), meta.get("ldmae.sampling"))?;
        let checksums: BTreeMap<String, u32> = serde_json::from_str(get("ldmae.checksums")?)
            .map_err(|e| Error::PackMetadata { key: "ldmae.checksums".into(), reason: e.to_string() })?;
        let tensors = reader.into_tensors().map_err(pack_err)?;
        let tensors = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        Ok(Self { spec, dtype, source: meta.get("ldmae.source").cloned(), tensors, checksums })
    }

    /// Names and shapes of all tensors, sorted by name.
    pub fn tensor_shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t.shape.as_slice()))
    }

    /// Total element count of all tensors.
    pub fn num_elements(&self) -> usize {
        self.tensors.values().map(|t| t.shape.as_slice().iter().product::<usize>()).sum()
    }

    /// The model the pack is for.
    pub fn model(&self) -> &ModelSpec {
        &self.spec
    }

    /// How the tensors are stored.
    pub fn precision(&self) -> Precision {
        self.dtype
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
        PackWriter::from_weights(self, spec, self.dtype, self.source.clone().unwrap_or_default())?.to_bytes()
    }

    /// Reads one tensor as f32 values, checking its shape and element type.
    pub fn read_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.into()))?;
        if t.shape.as_slice() != shape {
            return Err(Error::TensorShape {
                name: name.into(),
                expected: shape.to_vec(),
                found: t.shape.as_slice().to_vec(),
            });
        }
        if t.dtype != burn_dtype(self.dtype) {
            return Err(Error::TensorDtype {
                name: name.into(),
                expected: self.dtype.as_str().into(),
                found: format!("{:?}", t.dtype),
            });
        }
        let bytes = t.to_bytes().map_err(|e| Error::PackFormat(format!("tensor `{name}`: {e}")))?;
        if self.checksums.get(name) != Some(&crc32fast::hash(&bytes)) {
            return Err(Error::PackFormat(format!("tensor `{name}` is damaged (checksum mismatch)")));
        }
        let values = match self.dtype {
            Precision::F32 => Stored::F32,
            Precision::F16 => Stored::F16,
        }
        .decode(&bytes);
        if values.len() != shape.iter().product::<usize>() {
            return Err(Error::PackFormat(format!("tensor `{name}` has {} bytes for shape {shape:?}", bytes.len())));
        }
        Ok(values)
    }
}

fn parse_spec(kind: &str, get: &dyn Fn(&str) -> Result<String>, sampling: Option<&String>) -> Result<ModelSpec> {
    fn json<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| Error::PackMetadata { key: key.into(), reason: e.to_string() })
    }
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

/// Builds a pack from f32 tensors, storing them in the chosen dtype.
pub struct PackWriter {
    spec: ModelSpec,
    dtype: Precision,
    source: String,
    tensors: Vec<burn_pack::Tensor>,
    checksums: BTreeMap<String, u32>,
}

impl PackWriter {
    /// Starts a pack for `model`, storing tensors as `dtype`.
    pub fn new(spec: ModelSpec, dtype: Precision, source: impl Into<String>) -> Self {
        Self { spec, dtype, source: source.into(), tensors: Vec::new(), checksums: BTreeMap::new() }
    }

    /// A pack of every tensor of `weights` (in the model layout), described by `spec`.
    pub fn from_weights(
        weights: &dyn WeightSource,
        spec: ModelSpec,
        dtype: Precision,
        source: impl Into<String>,
    ) -> Result<Self> {
        let mut writer = Self::new(spec, dtype, source);
        for name in weights.tensor_names() {
            let shape = weights.tensor_shape(&name).unwrap_or_default();
            let values = weights.read_tensor(&name, &shape)?;
            writer.add(name, &shape, &values)?;
        }
        Ok(writer)
    }

    /// Adds a tensor given in the model layout (see [`WeightSource`]).
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], values: &[f32]) -> Result<()> {
        let name = name.into();
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::TensorShape { name, expected: shape.to_vec(), found: alloc::vec![values.len()] });
        }
        let bytes: Vec<u8> = match self.dtype {
            Precision::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        };
        self.checksums.insert(name.clone(), crc32fast::hash(&bytes));
        let tensor =
            burn_pack::Tensor::new(name, burn_dtype(self.dtype), shape.to_vec(), None, Bytes::from_bytes_vec(bytes));
        self.tensors.push(tensor);
        Ok(())
    }

    fn writer(self) -> Result<burn_pack::Writer> {
        let mut w = burn_pack::Writer::new(self.tensors)
            .with_metadata("ldmae.format", FORMAT_VERSION)
            .with_metadata("ldmae.kind", self.spec.kind())
            .with_metadata("ldmae.dtype", self.dtype.as_str())
            .with_metadata("ldmae.source", &self.source)
            .with_metadata("ldmae.checksums", &to_json(&self.checksums)?);
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

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Config(e.to_string()))
}

impl WeightSource for Pack {
    fn spec(&self) -> Result<ModelSpec> {
        Ok(self.spec.clone())
    }

    fn tensor_names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.as_slice().to_vec())
    }

    fn read_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.read_f32(name, shape)
    }
}

impl fmt::Display for Pack {
    /// What `ldmae info` prints: kind, precision, configuration, statistics, recorded sampling,
    /// source and size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ldmae weights: {} ({})", self.spec.kind(), self.dtype)?;
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
        write!(f, "{} tensors, {} parameters", self.tensors.len(), self.num_elements())
    }
}

//! The weight pack: one burnpack container holding a model's configuration, its latent
//! statistics (DiT) and its named tensors in f16 or f32.
//!
//! Tensors carry the official state-dict names (`blocks.3.attn.qkv.weight`, …). Linear
//! weights are stored in burn's `[in, out]` layout, i.e. transposed relative to PyTorch
//! ([`pack_layout`] says which); everything else keeps the PyTorch layout. The metadata keys are:
//!
//! | key | value |
//! |---|---|
//! | `ldmae.format` | `1` |
//! | `ldmae.kind` | `vmae` or `dit` |
//! | `ldmae.dtype` | `f16` or `f32` (every tensor has this type) |
//! | `ldmae.config` | the [`VmaeConfig`] or [`DitConfig`] as JSON |
//! | `ldmae.latent_stats` | DiT only: [`LatentStats`] as JSON |
//! | `ldmae.sampling` | DiT only, optional: recommended [`SamplingDefaults`] as JSON |
//! | `ldmae.source` | free text: what the pack was converted from |
//! | `ldmae.checksums` | CRC-32 of each tensor's stored bytes, by name: damage is an error |

use crate::config::{DitConfig, VmaeConfig};
use crate::device::{F16_MAX, Precision};
use crate::error::{Error, Result};
use crate::floats::Stored;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use burn::tensor::{Device, Tensor, TensorData};
use burn_pack::{Bytes, DType};
use serde::{Deserialize, Serialize};

/// Version written to and accepted from `ldmae.format`.
pub const FORMAT_VERSION: &str = "1";

/// Element type of the tensors in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackDtype {
    F16,
    F32,
}

impl PackDtype {
    /// The metadata spelling (`f16` / `f32`).
    pub fn as_str(self) -> &'static str {
        match self {
            PackDtype::F16 => "f16",
            PackDtype::F32 => "f32",
        }
    }

    fn burn(self) -> DType {
        match self {
            PackDtype::F16 => DType::F16,
            PackDtype::F32 => DType::F32,
        }
    }
}

impl core::str::FromStr for PackDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(PackDtype::F16),
            "f32" => Ok(PackDtype::F32),
            other => Err(Error::PackMetadata {
                key: "ldmae.dtype".into(),
                reason: format!("unknown dtype `{other}` (expected f16 or f32)"),
            }),
        }
    }
}

/// Per-channel statistics that normalise VMAE latents for the DiT (`latents_stats.pt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentStats {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl LatentStats {
    /// Checks the channel count and that every value is finite (and every std positive).
    pub fn validate(&self, channels: usize) -> Result<()> {
        let bad = |reason: String| Error::PackMetadata { key: "ldmae.latent_stats".into(), reason };
        if self.mean.len() != channels || self.std.len() != channels {
            return Err(bad(format!(
                "{} means and {} stds for {channels} latent channels",
                self.mean.len(),
                self.std.len()
            )));
        }
        if self.mean.iter().any(|v| !v.is_finite()) || self.std.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(bad("statistics must be finite with positive std".into()));
        }
        Ok(())
    }
}

/// Sampling settings a pack recommends (used when the caller gives none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingDefaults {
    pub steps: usize,
    pub shift: f32,
    pub cfg_scale: f32,
    pub cfg_interval_start: f32,
    /// Guided channels (absent: the official channels 0, 1, 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_channels: Option<Vec<usize>>,
}

/// The model a pack describes.
#[derive(Debug, Clone, PartialEq)]
pub enum PackModel {
    Vmae(VmaeConfig),
    Dit { config: DitConfig, stats: LatentStats, sampling: Option<SamplingDefaults> },
}

impl PackModel {
    /// `vmae` or `dit`.
    pub fn kind(&self) -> &'static str {
        match self {
            PackModel::Vmae(_) => "vmae",
            PackModel::Dit { .. } => "dit",
        }
    }
}

/// Whether an official tensor is stored transposed in a pack: true for linear weights
/// (2-D `*.weight` other than the label table).
pub fn pack_layout(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with(".weight") && !name.ends_with("embedding_table.weight")
}

/// A parsed weight pack. Tensor bytes stay where they are (memory or file) until used.
pub struct Pack {
    pub model: PackModel,
    pub dtype: PackDtype,
    pub source: Option<String>,
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
        let dtype: PackDtype = get("ldmae.dtype")?.parse()?;
        let model = parse_model(get("ldmae.kind")?, &|k| get(k).cloned(), meta.get("ldmae.sampling"))?;
        let checksums: BTreeMap<String, u32> = serde_json::from_str(get("ldmae.checksums")?)
            .map_err(|e| Error::PackMetadata { key: "ldmae.checksums".into(), reason: e.to_string() })?;
        let tensors = reader.into_tensors().map_err(pack_err)?;
        let tensors = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        Ok(Self { model, dtype, source: meta.get("ldmae.source").cloned(), tensors, checksums })
    }

    /// Names and shapes of all tensors, sorted by name.
    pub fn tensor_shapes(&self) -> impl Iterator<Item = (&str, &[usize])> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t.shape.as_slice()))
    }

    /// Total element count of all tensors.
    pub fn num_elements(&self) -> usize {
        self.tensors.values().map(|t| t.shape.as_slice().iter().product::<usize>()).sum()
    }

    /// The same pack with other recommended sampling settings (DiT packs only), e.g. the
    /// schedule a distilled model was trained for.
    pub fn with_sampling(&self, sampling: SamplingDefaults) -> Result<Vec<u8>> {
        let PackModel::Dit { config, stats, .. } = &self.model else {
            return Err(Error::WrongKind { expected: "dit", found: self.model.kind().into() });
        };
        let model = PackModel::Dit { config: *config, stats: stats.clone(), sampling: Some(sampling) };
        let mut w = PackWriter::new(model, self.dtype, self.source.clone().unwrap_or_default());
        for (name, t) in &self.tensors {
            w.add(name.clone(), t.shape.as_slice(), &self.read_f32(name, t.shape.as_slice())?)?;
        }
        w.to_bytes()
    }

    /// A 64-bit fingerprint of the weights (XXH3 over names, shapes and values rounded to f16),
    /// equal for the f16 and f32 packs of one model. Reads and checks every tensor.
    pub fn fingerprint(&self) -> Result<u64> {
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        for (name, t) in &self.tensors {
            hash.update(name.as_bytes());
            for &d in t.shape.as_slice() {
                hash.update(&(d as u64).to_le_bytes());
            }
            for v in self.read_f32(name, t.shape.as_slice())? {
                hash.update(&half::f16::from_f32(v).to_bits().to_le_bytes());
            }
        }
        Ok(hash.digest())
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
        if t.dtype != self.dtype.burn() {
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
            PackDtype::F32 => Stored::F32,
            PackDtype::F16 => Stored::F16,
        }
        .decode(&bytes);
        if values.len() != shape.iter().product::<usize>() {
            return Err(Error::PackFormat(format!("tensor `{name}` has {} bytes for shape {shape:?}", bytes.len())));
        }
        Ok(values)
    }
}

fn parse_model(kind: &str, get: &dyn Fn(&str) -> Result<String>, sampling: Option<&String>) -> Result<PackModel> {
    fn json<T: serde::de::DeserializeOwned>(key: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| Error::PackMetadata { key: key.into(), reason: e.to_string() })
    }
    match kind {
        "vmae" => {
            let config: VmaeConfig = json("ldmae.config", &get("ldmae.config")?)?;
            config.validate()?;
            Ok(PackModel::Vmae(config))
        }
        "dit" => {
            let config: DitConfig = json("ldmae.config", &get("ldmae.config")?)?;
            config.validate()?;
            let stats: LatentStats = json("ldmae.latent_stats", &get("ldmae.latent_stats")?)?;
            stats.validate(config.in_channels)?;
            let sampling = sampling.map(|s| json("ldmae.sampling", s)).transpose()?;
            Ok(PackModel::Dit { config, stats, sampling })
        }
        other => Err(Error::PackMetadata { key: "ldmae.kind".into(), reason: format!("unknown model kind `{other}`") }),
    }
}

/// Builds a pack from f32 tensors, storing them in the chosen dtype.
pub struct PackWriter {
    model: PackModel,
    dtype: PackDtype,
    source: String,
    tensors: Vec<burn_pack::Tensor>,
    checksums: BTreeMap<String, u32>,
}

impl PackWriter {
    /// Starts a pack for `model`, storing tensors as `dtype`.
    pub fn new(model: PackModel, dtype: PackDtype, source: impl Into<String>) -> Self {
        Self { model, dtype, source: source.into(), tensors: Vec::new(), checksums: BTreeMap::new() }
    }

    /// Adds a tensor given in pack layout (see [`pack_layout`]).
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize], values: &[f32]) -> Result<()> {
        let name = name.into();
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::TensorShape { name, expected: shape.to_vec(), found: alloc::vec![values.len()] });
        }
        let bytes: Vec<u8> = match self.dtype {
            PackDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            PackDtype::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        };
        self.checksums.insert(name.clone(), crc32fast::hash(&bytes));
        let tensor =
            burn_pack::Tensor::new(name, self.dtype.burn(), shape.to_vec(), None, Bytes::from_bytes_vec(bytes));
        self.tensors.push(tensor);
        Ok(())
    }

    fn writer(self) -> Result<burn_pack::Writer> {
        let mut w = burn_pack::Writer::new(self.tensors)
            .with_metadata("ldmae.format", FORMAT_VERSION)
            .with_metadata("ldmae.kind", self.model.kind())
            .with_metadata("ldmae.dtype", self.dtype.as_str())
            .with_metadata("ldmae.source", &self.source)
            .with_metadata("ldmae.checksums", &to_json(&self.checksums)?);
        match &self.model {
            PackModel::Vmae(c) => w = w.with_metadata("ldmae.config", &to_json(c)?),
            PackModel::Dit { config, stats, sampling } => {
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

/// Loads tensors from a pack onto a device, remembering which were used so that
/// [`TensorLoader::finish`] can refuse leftovers.
pub(crate) struct TensorLoader<'a> {
    pack: &'a Pack,
    device: &'a Device,
    half: bool,
    used: BTreeSet<String>,
}

impl<'a> TensorLoader<'a> {
    pub(crate) fn new(pack: &'a Pack, device: &'a Device) -> Self {
        Self { pack, device, half: crate::device::precision_of(device) == Precision::F16, used: BTreeSet::new() }
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub(crate) fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let values = self.pack.read_f32(name, &shape)?;
        if self.half && values.iter().any(|v| v.abs() > F16_MAX) {
            return Err(Error::F16Range(name.to_string()));
        }
        self.used.insert(name.to_string());
        Ok(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    /// Fails if the pack holds tensors that were never requested.
    pub(crate) fn finish(self) -> Result<()> {
        let unused: Vec<String> = self.pack.tensors.keys().filter(|n| !self.used.contains(*n)).cloned().collect();
        if unused.is_empty() { Ok(()) } else { Err(Error::UnexpectedTensors(unused)) }
    }
}

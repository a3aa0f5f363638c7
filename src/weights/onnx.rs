//! Reading models exported to ONNX (`export/reference/onnx_export.py`), via `onnx-ir`.
//!
//! Parameters are found by **initializer name**: an export must keep the official state-dict
//! names (`blocks.0.attn.qkv.weight`, …) with PyTorch layouts, which `torch.onnx.export` does
//! without constant folding. A model whose initializers were renamed or folded (e.g. into
//! `onnx::MatMul_123`) is **rejected** with an error saying so: we do not guess parameters from
//! graph structure. The graph is also checked for the structure we expect (inputs, outputs,
//! the operators that carry the model's numerics), so another architecture is refused.
//!
//! The VMAE is two graphs, `…encoder….onnx` and `…decoder….onnx`: given either file, the
//! other is the file whose name swaps `encoder` and `decoder`.

use super::state_dict::{SourceTensor, StateDict};
use crate::diffusion::LatentStats;
use crate::error::{Error, Result};
use crate::io::floats::Stored;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use onnx_ir::{Message, ModelProto, TensorProto, ValueInfoProto};
use std::path::{Path, PathBuf};

/// Largest ONNX file accepted (the official DiT is ~0.5 GB in f32).
const MAX_FILE: u64 = 4 << 30;

/// Official top-level parameter names of each model; other initializers are graph constants.
const VMAE_PREFIXES: &[&str] = &[
    "patch_embed.",
    "pos_embed",
    "blocks.",
    "norm.",
    "to_latent.",
    "from_latent.",
    "decoder_embed.",
    "decoder_pos_embed",
    "decoder_blocks.",
    "decoder_norm.",
    "decoder_pred.",
];
const DIT_PREFIXES: &[&str] =
    &["pos_embed", "x_embedder.", "t_embedder.", "y_embedder.", "feat_rope.", "blocks.", "final_layer."];

/// The expected interface of each graph kind: input ranks, output ranks, required operators.
struct Signature {
    kind: &'static str,
    inputs: &'static [(&'static str, usize)],
    outputs: &'static [(&'static str, usize)],
    ops: &'static [&'static str],
}

const ENCODER: Signature = Signature {
    kind: "vmae_encoder",
    inputs: &[("image", 4)],
    outputs: &[("posterior", 4)],
    ops: &["Conv", "Softmax", "Erf"],
};
const DECODER: Signature = Signature {
    kind: "vmae_decoder",
    inputs: &[("latent", 4)],
    outputs: &[("pixels", 4)],
    ops: &["Conv", "Softmax", "Erf"],
};
const DIT: Signature = Signature {
    kind: "dit",
    inputs: &[("x", 4), ("t", 1), ("y", 1)],
    outputs: &[("velocity", 4)],
    ops: &["Conv", "Softmax", "Sin", "Cos"],
};

/// One parsed graph: its float initializers and metadata.
struct Graph {
    path: PathBuf,
    metadata: BTreeMap<String, String>,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

fn err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), reason: reason.into() }
}

fn parse(path: &Path, sig: &Signature, prefixes: &[&str]) -> Result<Graph> {
    let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if size > MAX_FILE {
        return Err(err(path, format!("{size} bytes is larger than the {MAX_FILE}-byte limit")));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let model = ModelProto::parse_from_bytes(&bytes).map_err(|e| err(path, format!("not a valid ONNX model: {e}")))?;
    let metadata: BTreeMap<String, String> =
        model.metadata_props.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
    let graph = model.graph.as_ref().ok_or_else(|| err(path, "the ONNX model has no graph"))?;
    if let Some(kind) = metadata.get("ldmae.kind")
        && kind != sig.kind
    {
        return Err(err(path, format!("an ONNX `{kind}` graph where a `{}` graph is needed", sig.kind)));
    }
    check_io(path, "input", &graph.input, sig.inputs)?;
    check_io(path, "output", &graph.output, sig.outputs)?;
    for op in sig.ops {
        if !graph.node.iter().any(|n| n.op_type == *op) {
            return Err(err(path, format!("the graph has no `{op}` operator: not a {} graph", sig.kind)));
        }
    }
    let mut tensors = BTreeMap::new();
    let mut anonymous = 0;
    for t in &graph.initializer {
        if !prefixes.iter().any(|p| t.name.starts_with(p)) {
            anonymous += 1;
            continue;
        }
        tensors.insert(t.name.clone(), decode(path, t)?);
    }
    if tensors.is_empty() {
        return Err(err(
            path,
            format!(
                "none of its {anonymous} initializers carries an official parameter name \
                 (renamed or constant-folded export?); export with named parameters and no \
                 constant folding (see export/reference/onnx_export.py)"
            ),
        ));
    }
    Ok(Graph { path: path.to_path_buf(), metadata, tensors })
}

fn check_io(path: &Path, what: &str, values: &[ValueInfoProto], expected: &[(&str, usize)]) -> Result<()> {
    let found: Vec<(&str, usize)> = values
        .iter()
        .map(|v| (v.name.as_str(), v.type_.as_ref().map_or(0, |t| t.tensor_type().shape.dim.len())))
        .collect();
    if found != expected {
        return Err(err(path, format!("graph {what}s (name, rank) are {found:?}, expected {expected:?}")));
    }
    Ok(())
}

/// Float values of an initializer, checked against its dims before anything is allocated.
fn decode(path: &Path, t: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |reason: String| err(path, format!("initializer `{}`: {reason}", t.name));
    if !t.external_data.is_empty() || t.data_location.value() != 0 {
        return Err(bad("external data files are not supported; export into one file".into()));
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
        .collect::<Result<_>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("shape overflows".into()))?;
    let raw = &t.raw_data;
    let (stored, typed_len) = match t.data_type {
        1 => (Stored::F32, t.float_data.len()),
        10 => (Stored::F16, t.int32_data.len()),
        16 => (Stored::BF16, t.int32_data.len()),
        11 => (Stored::F64, t.double_data.len()),
        other => return Err(bad(format!("ONNX data type {other} is not a float type"))),
    };
    let width = stored.width();
    let available = if raw.is_empty() { typed_len } else { raw.len() / width };
    if available != count || (!raw.is_empty() && !raw.len().is_multiple_of(width)) {
        return Err(bad(format!("{available} values stored for shape {shape:?}")));
    }
    // Values are either raw little-endian bytes or in the typed field for their type.
    let values = match (stored, raw.is_empty()) {
        (_, false) => stored.decode(raw),
        (Stored::F32, true) => t.float_data.clone(),
        (Stored::F16, true) => t.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f32()).collect(),
        (Stored::BF16, true) => t.int32_data.iter().map(|&b| half::bf16::from_bits(b as u16).to_f32()).collect(),
        (Stored::F64, true) => t.double_data.iter().map(|&v| v as f32).collect(),
    };
    Ok((shape, values))
}

fn heads(g: &Graph, key: &str) -> Result<Option<usize>> {
    g.metadata
        .get(key)
        .map(|v| v.parse().map_err(|_| err(&g.path, format!("metadata `{key}` = `{v}` is not a count"))))
        .transpose()
}

fn state_dict(path: &Path, entry: String, graphs: Vec<Graph>) -> StateDict {
    let tensors = graphs
        .into_iter()
        .flat_map(|g| g.tensors)
        .map(|(name, (shape, values))| (name, SourceTensor::lazy(shape, move || Ok(values.clone()))))
        .collect();
    StateDict::new(path, entry, tensors)
}

/// Reads a VMAE from its encoder and decoder graphs (`path` names either one).
pub fn open_vmae(path: &Path) -> Result<StateDict> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (encoder, decoder) = if name.contains("encoder") {
        (path.to_path_buf(), path.with_file_name(name.replacen("encoder", "decoder", 1)))
    } else if name.contains("decoder") {
        (path.with_file_name(name.replacen("decoder", "encoder", 1)), path.to_path_buf())
    } else {
        return Err(err(path, "an ONNX VMAE is two files whose names contain `encoder` and `decoder`"));
    };
    let enc = parse(&encoder, &ENCODER, VMAE_PREFIXES)?;
    let dec = parse(&decoder, &DECODER, VMAE_PREFIXES)?;
    let heads_ = (heads(&enc, "ldmae.heads")?, heads(&dec, "ldmae.decoder_heads")?);
    let entry = format!("ONNX graphs {} + {}", encoder.display(), decoder.display());
    Ok(state_dict(path, entry, vec![enc, dec]).with_recorded_heads(heads_))
}

/// Reads a LightningDiT graph (`x, t, y → velocity`), with latent statistics if it records them.
pub fn open_dit(path: &Path) -> Result<StateDict> {
    let g = parse(path, &DIT, DIT_PREFIXES)?;
    let stats = g
        .metadata
        .get("ldmae.latent_stats")
        .map(|s| {
            serde_json::from_str::<LatentStats>(s).map_err(|e| err(path, format!("metadata `ldmae.latent_stats`: {e}")))
        })
        .transpose()?;
    Ok(state_dict(path, "the ONNX graph".to_string(), vec![g]).with_recorded_stats(stats))
}

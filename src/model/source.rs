//! Where networks get their tensors: the [`WeightSource`] trait (a weight pack, a checkpoint's
//! state dict and an ONNX graph implement it, in `crate::weights`) and the strict loader the
//! networks are built with.

use super::config::ModelSpec;
use crate::device::precision_of;
use crate::error::{Error, Result};
use crate::precision::{F16_MAX, Precision};
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use burn::tensor::{Device, Tensor, TensorData};

/// Named tensors of one model, by official state-dict name, in the model layout: linear weights
/// `[in, out]` (PyTorch stores them `[out, in]`: 2-D `*.weight` tensors other than the label
/// table), everything else as PyTorch has it.
pub trait WeightSource {
    /// The model the tensors are for.
    fn spec(&self) -> Result<ModelSpec>;
    /// Every tensor name, sorted.
    fn tensor_names(&self) -> Vec<String>;
    /// The shape of tensor `name` in the model layout, if there is such a tensor.
    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The values of tensor `name`, which must have exactly `shape` and be intact:
    /// [`Error::MissingTensor`], [`Error::TensorShape`] and the source's own errors otherwise.
    fn read_tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
    /// An error met while building a model from these tensors, said with where they come from.
    fn context(&self, error: Error) -> Error {
        error
    }
}

/// Builds a network's tensors from a source onto a device, remembering which were used so that
/// leftovers can be refused.
pub(crate) struct Loader<'a> {
    source: &'a dyn WeightSource,
    device: &'a Device,
    half: bool,
    used: BTreeSet<String>,
}

impl<'a> Loader<'a> {
    /// Runs `build` on a loader, then refuses tensors it never asked for; errors carry the
    /// source's context.
    pub(crate) fn strict<T>(
        source: &'a dyn WeightSource,
        device: &'a Device,
        build: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let half = precision_of(device) == Precision::F16;
        let mut loader = Self { source, device, half, used: BTreeSet::new() };
        let built = build(&mut loader).and_then(|model| loader.finish().map(|()| model));
        built.map_err(|e| source.context(e))
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub(crate) fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let values = self.source.read_tensor(name, &shape)?;
        if self.half && values.iter().any(|v| v.abs() > F16_MAX) {
            return Err(Error::F16Range(name.to_string()));
        }
        self.used.insert(name.to_string());
        Ok(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    fn finish(&self) -> Result<()> {
        let unused: Vec<String> = self.source.tensor_names().into_iter().filter(|n| !self.used.contains(n)).collect();
        if unused.is_empty() { Ok(()) } else { Err(Error::UnexpectedTensors(unused)) }
    }
}

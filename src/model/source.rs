//! Where networks get their tensors: the [`WeightSource`] trait (a weight pack, a checkpoint's
//! state dict and an ONNX graph implement it, in `crate::weights`) and the strict loader the
//! networks are built with.

use super::config::ModelSpec;
use crate::device::precision_of;
use crate::error::{Error, Result};
use crate::precision::Precision;
use alloc::collections::BTreeSet;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use burn::tensor::{Device, Tensor, TensorData};
use half::f16;

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
    /// [`Self::read_tensor`] as the float type a device of `precision` computes in. Sources
    /// that store f16 or integers override it to skip the f32 copy on f16 devices.
    fn read_data(&self, name: &str, shape: &[usize], precision: Precision) -> Result<TensorData> {
        let values = self.read_tensor(name, shape)?;
        Ok(match precision {
            Precision::F32 => TensorData::new(values, shape.to_vec()),
            Precision::F16 => {
                TensorData::new(values.into_iter().map(f16::from_f32).collect::<Vec<_>>(), shape.to_vec())
            }
        })
    }
    /// An error met while building a model from these tensors, said with where they come from.
    fn context(&self, error: Error) -> Error {
        error
    }
}

/// Whether an official tensor is a linear weight, stored transposed in the model layout: a 2-D
/// `*.weight` other than the label table.
pub(crate) fn is_linear_weight(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with(".weight") && !name.ends_with("embedding_table.weight")
}

/// Builds a network's tensors from a source onto a device, remembering which were used so that
/// leftovers can be refused.
pub(crate) struct Loader<'a> {
    source: &'a dyn WeightSource,
    device: &'a Device,
    precision: Precision,
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
        let precision = precision_of(device);
        let mut loader = Self { source, device, precision, used: BTreeSet::new() };
        let built = build(&mut loader).and_then(|model| loader.finish().map(|()| model));
        built.map_err(|e| source.context(e))
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub(crate) fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let data = self.source.read_data(name, &shape, self.precision)?;
        // Branch-free so that it vectorises: this runs over every weight.
        let infinite = |v: &[f16]| v.iter().fold(false, |acc, x| acc | (x.to_bits() & 0x7fff == 0x7c00));
        if self.precision == Precision::F16 && data.as_slice::<f16>().is_ok_and(infinite) {
            return Err(Error::F16Range(name.to_string()));
        }
        self.used.insert(name.to_string());
        Ok(Tensor::from_data(data, self.device))
    }

    fn finish(&self) -> Result<()> {
        let unused: Vec<String> = self.source.tensor_names().into_iter().filter(|n| !self.used.contains(n)).collect();
        if unused.is_empty() { Ok(()) } else { Err(Error::UnexpectedTensors(unused)) }
    }
}

//! The library's error type: every failure names what was being read and what was expected.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Result alias used throughout the crate.
pub type Result<T> = core::result::Result<T, Error>;

/// Everything that can go wrong while loading weights or running the models.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// The weight pack container itself is unreadable (truncated, bad magic, bad header).
    PackFormat(String),
    /// The pack's metadata is missing a key or holds a value we cannot interpret.
    PackMetadata { key: String, reason: String },
    /// The pack is for another model kind than the one requested.
    WrongKind { expected: &'static str, found: String },
    /// A tensor the model needs is not in the pack.
    MissingTensor(String),
    /// The pack holds tensors the model does not use (strict loading refuses them).
    UnexpectedTensors(Vec<String>),
    /// A tensor has another shape than the configuration implies.
    TensorShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    /// A tensor has another element type than the pack declares.
    TensorDtype { name: String, expected: String, found: String },
    /// A model configuration is inconsistent (e.g. width not divisible by heads).
    Config(String),
    /// An input has the wrong shape for the model it is fed to.
    InputShape { what: &'static str, expected: String, found: Vec<usize> },
    /// An input value is out of range (e.g. a class label beyond the label table).
    InputValue { what: &'static str, reason: String },
    /// A tensor that must be finite holds NaN or infinity.
    NonFinite { what: &'static str },
    /// A weight beyond f16's range (±65504) cannot be loaded onto an f16 device.
    F16Range(String),
    /// The compute device refused an operation (e.g. an unsupported float type).
    Device(String),
    /// A `.npy` file is malformed or holds an unsupported type.
    Npy(String),
    /// An image could not be decoded or encoded.
    Image(String),
    /// A PyTorch checkpoint could not be read or does not hold the expected model.
    Checkpoint { path: String, reason: String },
    /// A file could not be read or written.
    Io { path: String, reason: String },
    /// A `.ldz` file is malformed, damaged or truncated.
    Ldz(String),
    /// A `.ldz` file of a format version this build does not read.
    LdzVersion(u8),
    /// A `.ldz` file made with other VMAE weights than the ones given to decode it.
    LdzModel { expected: u64, found: u64 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PackFormat(reason) => write!(f, "invalid weight pack: {reason}"),
            Error::PackMetadata { key, reason } => {
                write!(f, "weight pack metadata `{key}`: {reason}")
            }
            Error::WrongKind { expected, found } => {
                write!(f, "expected a {expected} weight pack, found a `{found}` pack")
            }
            Error::MissingTensor(name) => write!(f, "weight pack lacks tensor `{name}`"),
            Error::UnexpectedTensors(names) => {
                write!(f, "weight pack holds {} tensor(s) the model does not use: ", names.len())?;
                for (i, n) in names.iter().take(8).enumerate() {
                    write!(f, "{}`{n}`", if i > 0 { ", " } else { "" })?;
                }
                if names.len() > 8 {
                    write!(f, ", …")?;
                }
                Ok(())
            }
            Error::TensorShape { name, expected, found } => {
                write!(f, "tensor `{name}` has shape {found:?}, expected {expected:?}")
            }
            Error::TensorDtype { name, expected, found } => {
                write!(f, "tensor `{name}` is {found}, expected {expected}")
            }
            Error::Config(reason) => write!(f, "invalid model configuration: {reason}"),
            Error::InputShape { what, expected, found } => {
                write!(f, "{what} has shape {found:?}, expected {expected}")
            }
            Error::InputValue { what, reason } => write!(f, "invalid {what}: {reason}"),
            Error::NonFinite { what } => write!(f, "{what} contains NaN or infinite values"),
            Error::F16Range(name) => {
                write!(f, "tensor `{name}` holds values beyond f16's range (±65504): load it onto an f32 device")
            }
            Error::Device(reason) => write!(f, "device error: {reason}"),
            Error::Npy(reason) => write!(f, "invalid .npy data: {reason}"),
            Error::Image(reason) => write!(f, "image error: {reason}"),
            Error::Checkpoint { path, reason } => write!(f, "checkpoint {path}: {reason}"),
            Error::Io { path, reason } => write!(f, "{path}: {reason}"),
            Error::Ldz(reason) => write!(f, "invalid .ldz file: {reason}"),
            Error::LdzVersion(v) => {
                write!(f, "unsupported .ldz version {v} (this build reads version {})", crate::ldz::VERSION)
            }
            Error::LdzModel { expected, found } => write!(
                f,
                "the .ldz file was made with VMAE weights {found:016x}, not with these ({expected:016x}): \
                 decompress it with the weights it was compressed with"
            ),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(feature = "std")]
impl Error {
    /// Wraps an IO error with the path it concerns.
    pub fn io(path: &std::path::Path, err: std::io::Error) -> Self {
        use alloc::string::ToString;
        Error::Io { path: path.display().to_string(), reason: err.to_string() }
    }
}

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
    PackMetadata {
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The pack is for another model kind than the one requested.
    WrongKind {
        /// The kind asked for (`vmae` / `dit`).
        expected: &'static str,
        /// The kind found.
        found: String,
    },
    /// A tensor the model needs is not in the pack.
    MissingTensor(String),
    /// The pack holds tensors the model does not use (strict loading refuses them).
    UnexpectedTensors(Vec<String>),
    /// A tensor has another shape than the configuration implies.
    TensorShape {
        /// The tensor.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor has another element type than the pack declares.
    TensorDtype {
        /// The tensor.
        name: String,
        /// The type the pack declares.
        expected: String,
        /// The type found.
        found: String,
    },
    /// A model configuration is inconsistent (e.g. width not divisible by heads).
    Config(String),
    /// An input has the wrong shape for the model it is fed to.
    InputShape {
        /// Which input.
        what: &'static str,
        /// The shape expected, in words.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// An input value is out of range (e.g. a class label beyond the label table).
    InputValue {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor that must be finite holds NaN or infinity.
    NonFinite {
        /// Which tensor.
        what: &'static str,
    },
    /// A weight beyond f16's range (±65504) cannot be loaded onto an f16 device.
    F16Range(String),
    /// The compute device refused an operation (e.g. an unsupported float type).
    Device(String),
    /// A `.npy` file is malformed or holds an unsupported type.
    Npy(String),
    /// An image could not be decoded or encoded.
    Image(String),
    /// A PyTorch checkpoint could not be read or does not hold the expected model.
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: String,
        /// The system's error.
        reason: String,
    },
    /// A `.ldz` file is malformed, damaged or truncated.
    Ldz(String),
    /// A `.ldz` file of a format version this build does not read.
    LdzVersion {
        /// The version in the file.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A `.ldz` file made with other VMAE weights than the ones given to decode it.
    LdzModel {
        /// Fingerprint of the weights given to decode it.
        expected: u64,
        /// Fingerprint recorded in the file.
        found: u64,
    },
    /// A progress callback asked to stop the work.
    Cancelled,
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
            Error::LdzVersion { found, supported } => {
                write!(f, "unsupported .ldz version {found} (this build reads version {supported})")
            }
            Error::LdzModel { expected, found } => write!(
                f,
                "the .ldz file was made with VMAE weights {found:016x}, not with these ({expected:016x}): \
                 decompress it with the weights it was compressed with"
            ),
            Error::Cancelled => write!(f, "cancelled by the progress callback"),
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

//! What goes in and out of the models as data: 8-bit RGB images and their exact conversion to
//! and from model tensors ([`image`]), PNG files, and `.npy` float arrays ([`npy`]).

pub(crate) mod floats;
pub mod image;
pub mod npy;

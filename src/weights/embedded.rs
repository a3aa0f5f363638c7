//! Demo weights trained for this crate and shipped inside it (feature `embedded-models`), so
//! that the codec and examples work without any download. How they were trained and how good
//! they are: `export/train/README.md`.

use super::Pack;
use crate::error::Result;

/// The photo VMAE (f16 weight pack): trained on photo crops for compression and round trips.
pub const PHOTO_VMAE: &[u8] = include_bytes!("../../assets/vmae-photo.pack");

/// The photo VMAE as a parsed pack.
pub fn photo_vmae() -> Result<Pack> {
    Pack::from_static(PHOTO_VMAE)
}

/// The Fashion-MNIST VMAE (f16): 32² grey-as-RGB images ↔ 4×8×8 latents.
pub const FASHION_VMAE: &[u8] = include_bytes!("../../assets/vmae-fashion.pack");

/// The Fashion-MNIST class-conditional DiT distilled to 2 steps with guidance folded in (f16);
/// its pack records the schedule, so the sampler's defaults from it are the right ones.
/// Classes: 0 T-shirt/top, 1 trouser, 2 pullover, 3 dress, 4 coat, 5 sandal, 6 shirt,
/// 7 sneaker, 8 bag, 9 ankle boot.
pub const FASHION_DIT: &[u8] = include_bytes!("../../assets/dit-fashion-2step.pack");

/// The Fashion-MNIST VMAE as a parsed pack.
pub fn fashion_vmae() -> Result<Pack> {
    Pack::from_static(FASHION_VMAE)
}

/// The 2-step Fashion-MNIST DiT as a parsed pack.
pub fn fashion_dit() -> Result<Pack> {
    Pack::from_static(FASHION_DIT)
}

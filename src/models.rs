//! Demo weights trained for this crate and shipped inside it (feature `embedded-models`), so
//! that the codec and examples work without any download. How they were trained and how good
//! they are: `export/train/README.md`.

use crate::error::Result;
use crate::pack::Pack;

/// The photo VMAE (f16 weight pack): trained on photo crops for compression and round trips.
pub const PHOTO_VMAE: &[u8] = include_bytes!("../assets/vmae-photo.pack");

/// The photo VMAE as a parsed pack.
pub fn photo_vmae() -> Result<Pack> {
    Pack::from_bytes(PHOTO_VMAE)
}

"""Photo sources for the photo VMAE (Debian packages, see shared/data/README.md).

TEST   = the 24 photos of shared/data/make_photo24.py (never trained on).
VAL    = 4 further whole photos held out for validation.
TRAIN  = the remaining real photos (plus a few paintings/renders for texture).
Synthetic images (logos, charts, chessboards, text) and grayscale-only files
are not used. vtest.avi is not used (no video decoder installed).
"""

import os
import sys

import numpy as np
import torch
from PIL import Image

MATE = "/usr/share/backgrounds/mate"
PAL = "/usr/share/palapeli/collection"
WES = "/usr/share/libjxl-testdata/external/wesaturate"
RAWP = "/usr/share/libjxl-testdata/external/raw.pixls"
CV = "/usr/share/doc/opencv-doc/examples/data"

# Held-out validation photos (whole files; the 64 px copy of the wesaturate
# photo is excluded from training too).
VAL = [
    f"{WES}/500px/u76c0g_bliznaca_srgb8.png",   # blossoms, lossless 500x500
    f"{CV}/building.jpg",                        # architecture 868x600
    f"{CV}/squirrel_cls.jpg",                    # animal/foliage 535x426
    f"{CV}/fruits.jpg",                          # still life 512x480
]
VAL_EXTRA_EXCLUDE = [f"{WES}/64px/u76c0g_bliznaca_srgb8.png"]

# (path, max scale). Heavily JPEG-compressed wallpapers are only used
# downscaled by >= 2 (hides their block artefacts).
TRAIN = [
    (f"{MATE}/nature/Aqua.jpg", 0.5),
    (f"{MATE}/nature/FreshFlower.jpg", 0.5),
    (f"{MATE}/nature/Garden.jpg", 0.5),
    (f"{MATE}/nature/YellowFlower.jpg", 0.5),
    (f"{MATE}/abstract/Elephants.jpg", 0.5),      # painting
    (f"{PAL}/european-honey-bee.jpg", 1.0),
    (f"{WES}/500px/cvo9xd_keong_macan_srgb8.png", 1.0),
    (f"{WES}/500px/tmshre_riaphotographs_srgb8.png", 1.0),
] + [(f"{CV}/{n}", 1.0) for n in (
    "aero1.jpg aero3.jpg aloeL.jpg aloeR.jpg apple.jpg baboon.jpg "
    "butterfly.jpg home.jpg leuvenA.jpg leuvenB.jpg licenseplate_motion.jpg "
    "messi5.jpg orange.jpg pca_test1.jpg rubberwhale1.png rubberwhale2.png "
    "smarties.png stuff.jpg graf1.png graf3.png ela_original.jpg left.jpg "
    "right.jpg board.jpg starry_night.jpg HappyFish.jpg "
    "Blender_Suzanne1.jpg").split()]
# 64x64 photo thumbnails: only usable when the crop size is <= 64.
TINY = [f"{WES}/64px/{n}_srgb8.png" for n in (
    "Nikon-D3-14bit a2d1un_nkitzmiller cvo9xd_keong_macan l1qnb5_nkitzmiller "
    "phu1or_alfann24 q3a0b3_d17ws ra0ed45_alfann24 t0gho7_orlaustral "
    "tmshre_riaphotographs vgqcws_vin").split()] + [f"{RAWP}/{n}.png" for n in (
    "DJI-FC6310-16bit_srgb8_v4_krita Google-Pixel2XL-16bit_srgb8_v4_krita "
    "HUAWEI-EVA-L09-16bit_srgb8_dt Nikon-D300-12bit_srgb8_dt "
    "Sony-DSC-RX1RM2-14bit_srgb8_v4_krita").split()]


def test_files():
    sys.path.insert(0, "/work/shared/data")
    import make_photo24
    return [os.path.realpath(f) for f in make_photo24.SET]


def _check_disjoint():
    test = set(test_files())
    train = {os.path.realpath(p) for p, _ in TRAIN} | \
        {os.path.realpath(p) for p in TINY}
    val = {os.path.realpath(p) for p in VAL + VAL_EXTRA_EXCLUDE}
    assert not (train & test), train & test
    assert not (train & val), train & val
    assert not (val & test), val & test


def load_rgb(path):
    return Image.open(path).convert("RGB")


def to_tensor(arr):
    """uint8 HWC (or NHWC) -> float [-1, 1] NCHW."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).float() / 127.5 - 1.0
    return t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


class TrainCrops:
    """Random crops from image pyramids (scales 2^(-k/4) times the file's
    max scale, down to where the short side still holds a crop), with random
    horizontal flips. Levels are drawn with probability ~ sqrt(area)."""

    def __init__(self, crop, seed=0):
        _check_disjoint()
        self.crop, self.seed = crop, seed
        self.levels, self.names = [], []
        files = list(TRAIN) + ([(p, 1.0) for p in TINY] if crop <= 64 else [])
        for path, smax in files:
            im = load_rgb(path)
            w, h = im.size
            k = 0
            while True:
                s = smax * 2 ** (-k / 4)
                tw, th = round(w * s), round(h * s)
                if min(tw, th) < crop:
                    break
                lv = im if (tw, th) == (w, h) else \
                    im.resize((tw, th), Image.LANCZOS, reducing_gap=3.0)
                self.levels.append(np.asarray(lv))
                self.names.append(f"{os.path.basename(path)}@{s:.2f}")
                k += 1
        area = np.array([a.shape[0] * a.shape[1] for a in self.levels], float)
        self.prob = np.sqrt(area) / np.sqrt(area).sum()
        self.n_files = len(files)

    def describe(self):
        px = sum(a.shape[0] * a.shape[1] for a in self.levels)
        return (f"train data: {self.n_files} photos, {len(self.levels)} "
                f"pyramid levels, {px / 1e6:.1f} Mpx")

    def batch(self, n, step):
        """Deterministic in (seed, step): resuming replays the same data."""
        rng = np.random.default_rng([self.seed, step])
        c = self.crop
        out = np.empty((n, c, c, 3), np.uint8)
        lv = rng.choice(len(self.levels), size=n, p=self.prob)
        for i, j in enumerate(lv):
            a = self.levels[j]
            y = rng.integers(0, a.shape[0] - c + 1)
            x = rng.integers(0, a.shape[1] - c + 1)
            patch = a[y:y + c, x:x + c]
            out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
        return to_tensor(out)


def val_photo(path, mult):
    """Whole validation photo at native size, centre-cropped to a multiple
    of `mult` in both directions (uint8 HWC)."""
    a = np.asarray(load_rgb(path))
    h, w = a.shape[:2]
    th, tw = h // mult * mult, w // mult * mult
    y, x = (h - th) // 2, (w - tw) // 2
    return a[y:y + th, x:x + tw]


def val_crops(crop, per_photo=8, seed=123):
    """Fixed random crops of the validation photos for quick checks."""
    rng = np.random.default_rng(seed)
    out = []
    for p in VAL:
        a = np.asarray(load_rgb(p))
        for _ in range(per_photo):
            y = rng.integers(0, a.shape[0] - crop + 1)
            x = rng.integers(0, a.shape[1] - crop + 1)
            out.append(a[y:y + crop, x:x + crop])
    return to_tensor(np.stack(out))


if __name__ == "__main__":
    _check_disjoint()
    d = TrainCrops(128)
    print(d.describe())
    for n in d.names:
        print(" ", n)

#!/usr/bin/env python3
"""How much of an evaluation's anomaly maps is a frame along the image border.

usage: border_profile.py DATASET_CATEGORY MAPS_CATEGORY [--frame 8] [--out DIR]

MAPS_CATEGORY is `ust evaluate --save-maps`'s OUT/maps/<category> (TIFF maps laid out like the
test split). Prints, over the defect-free test images, the mean score in bands of distance to
the border (0-4, 4-8, 8-16 and 16+ pixels): a frame shows as bands near the border far above the
interior. With --out, also writes a copy of the test split, masks and maps with --frame pixels cut
away on every side, to score with `ust eval --dataset DIR --maps DIR/maps` (the AU-PRO the maps
would have without their border). Needs numpy and pillow.
"""
import argparse
import os

import numpy as np
from PIL import Image

BANDS = [(0, 4), (4, 8), (8, 16), (16, None)]


def read_map(path):
    return np.asarray(Image.open(path), dtype=np.float64)


def distance_to_border(h, w):
    rows = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None]
    cols = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :]
    return np.minimum(rows, cols)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("maps")
    ap.add_argument("--frame", type=int, default=8)
    ap.add_argument("--out")
    a = ap.parse_args()
    sums = [0.0] * len(BANDS)
    counts = [0] * len(BANDS)
    good = os.path.join(a.maps, "test", "good")
    for name in sorted(os.listdir(good)):
        m = read_map(os.path.join(good, name))
        d = distance_to_border(*m.shape)
        for k, (lo, hi) in enumerate(BANDS):
            sel = (d >= lo) if hi is None else ((d >= lo) & (d < hi))
            sums[k] += m[sel].sum()
            counts[k] += int(sel.sum())
    for (lo, hi), s, n in zip(BANDS, sums, counts):
        band = f"{lo}+ px" if hi is None else f"{lo}-{hi} px"
        print(f"defect-free test images, {band} from the border: mean score {s / n:.3f}")
    if a.out:
        f = a.frame
        category = os.path.basename(os.path.normpath(a.dataset))
        test = os.path.join(a.dataset, "test")
        for defect in sorted(os.listdir(test)):
            for name in sorted(os.listdir(os.path.join(test, defect))):
                stem = os.path.splitext(name)[0]
                pairs = [
                    (os.path.join(test, defect, name),
                     os.path.join(a.out, category, "test", defect, name)),
                    (os.path.join(a.maps, "test", defect, stem + ".tiff"),
                     os.path.join(a.out, "maps", category, "test", defect, stem + ".tiff")),
                ]
                mask = os.path.join(a.dataset, "ground_truth", defect, stem + "_mask.png")
                if os.path.exists(mask):
                    pairs.append((mask, os.path.join(a.out, category, "ground_truth", defect,
                                                     stem + "_mask.png")))
                for src, dst in pairs:
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    im = Image.open(src)
                    w, h = im.size
                    im.crop((f, f, w - f, h - f)).save(dst)
        # A category needs an image in train/good to be recognised: the first good test image.
        train = os.path.join(a.out, category, "train", "good")
        os.makedirs(train, exist_ok=True)
        first = sorted(os.listdir(os.path.join(a.out, category, "test", "good")))[0]
        Image.open(os.path.join(a.out, category, "test", "good", first)).save(
            os.path.join(train, first))
        print(f"cropped copy with a {f}-px frame cut away: {a.out}")


if __name__ == "__main__":
    main()

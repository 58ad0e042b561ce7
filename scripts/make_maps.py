#!/usr/bin/env python3
"""Writes synthetic anomaly maps for every test image of an MVTec-layout dataset, to check
`ust eval` against an independent computation (reference_au_pro.py).

usage: make_maps.py DATASET_ROOT OUT_ROOT {random,perfect,noisy} [--seed N] [--format tiff|npy]

random:  uniform noise; perfect: 1 inside the defect, 0 outside;
noisy:   the mask blurred by noise (mask + N(0, 0.5)), quantised to 1/64 to create many ties.
Needs numpy, tifffile and pillow.
"""
import argparse
import os

import numpy as np
import tifffile
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("out")
    ap.add_argument("kind", choices=["random", "perfect", "noisy"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=["tiff", "npy"], default="tiff")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    cats = sorted(d for d in os.listdir(a.dataset) if os.path.isdir(os.path.join(a.dataset, d, "test")))
    for cat in cats:
        test = os.path.join(a.dataset, cat, "test")
        for defect in sorted(os.listdir(test)):
            out_dir = os.path.join(a.out, cat, "test", defect)
            os.makedirs(out_dir, exist_ok=True)
            for f in sorted(os.listdir(os.path.join(test, defect))):
                stem = os.path.splitext(f)[0]
                w, h = Image.open(os.path.join(test, defect, f)).size
                mask = np.zeros((h, w), np.float32)
                if defect != "good":
                    m = np.asarray(Image.open(os.path.join(a.dataset, cat, "ground_truth", defect, stem + "_mask.png")).convert("L"))
                    mask = (m > 0).astype(np.float32)
                if a.kind == "random":
                    amap = rng.random((h, w), dtype=np.float32)
                elif a.kind == "perfect":
                    amap = mask
                else:
                    amap = np.round((mask + rng.normal(0, 0.5, (h, w))) * 64) / 64
                amap = amap.astype(np.float32)
                if a.format == "tiff":
                    tifffile.imwrite(os.path.join(out_dir, stem + ".tiff"), amap)
                else:
                    np.save(os.path.join(out_dir, stem + ".npy"), amap)


if __name__ == "__main__":
    main()

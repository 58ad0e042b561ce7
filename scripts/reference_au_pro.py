#!/usr/bin/env python3
"""An independent NumPy/SciPy computation of the official MVTec AD metrics, to check
`ust eval`: AU-PRO (the official algorithm: argsort of all pixels, cumulative FPR and PRO,
ties collapsed to their last point, (0,0) and (1,1) added, clipping, limited trapezoid with
interpolation), pixel AUROC (Mann-Whitney with mid-ranks) and image AUROC (max of the map).

usage: reference_au_pro.py DATASET_ROOT MAPS_ROOT [--fpr-limit 0.3]
Prints JSON {category: {au_pro, pixel_auroc, image_auroc}}. Needs numpy, scipy, tifffile, pillow.
"""
import argparse
import bisect
import json
import os

import numpy as np
import tifffile
from PIL import Image
from scipy.ndimage import label
from scipy.stats import rankdata


def limited_trapezoid(x, y, x_max):
    correction = 0.0
    if x_max not in x:
        ins = bisect.bisect(list(x), x_max)
        y_interp = y[ins - 1] + (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
        correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
    keep = x <= x_max
    x, y = x[keep], y[keep]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def au_pro(maps, masks, limit):
    fp_change, pro_change = [], []
    n_ok, n_regions = 0, 0
    for m in masks:
        lab, n = label(m, np.ones((3, 3), int))
        n_regions += n
        ok = lab == 0
        n_ok += ok.sum()
        fp_change.append(ok.astype(np.float64).ravel())
        pc = np.zeros(m.shape, np.float64)
        for k in range(1, n + 1):
            r = lab == k
            pc[r] = 1.0 / r.sum()
        pro_change.append(pc.ravel())
    scores = np.concatenate([a.ravel() for a in maps])
    order = np.argsort(scores, kind="stable")[::-1]
    scores = scores[order]
    fprs = np.cumsum(np.concatenate(fp_change)[order]) / n_ok
    pros = np.cumsum(np.concatenate(pro_change)[order]) / n_regions
    keep = np.append(np.diff(scores) != 0, True)
    fprs = np.clip(fprs[keep], None, 1.0)
    pros = np.clip(pros[keep], None, 1.0)
    fprs = np.concatenate(([0.0], fprs, [1.0]))
    pros = np.concatenate(([0.0], pros, [1.0]))
    return limited_trapezoid(fprs, pros, limit) / limit


def auroc(scores, labels):
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, bool)
    ranks = rankdata(scores)  # mid-ranks for ties
    p, n = labels.sum(), (~labels).sum()
    return (ranks[labels].sum() - p * (p + 1) / 2) / (p * n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("maps")
    ap.add_argument("--fpr-limit", type=float, default=0.3)
    a = ap.parse_args()
    out = {}
    cats = sorted(d for d in os.listdir(a.dataset) if os.path.isdir(os.path.join(a.dataset, d, "test")))
    for cat in cats:
        maps, masks = [], []
        test = os.path.join(a.dataset, cat, "test")
        for defect in sorted(os.listdir(test)):
            for f in sorted(os.listdir(os.path.join(test, defect))):
                stem = os.path.splitext(f)[0]
                base = os.path.join(a.maps, cat, "test", defect, stem)
                amap = tifffile.imread(base + ".tiff") if os.path.exists(base + ".tiff") else np.load(base + ".npy")
                maps.append(np.asarray(amap, np.float32))
                if defect == "good":
                    masks.append(np.zeros(amap.shape, np.uint8))
                else:
                    m = np.asarray(Image.open(os.path.join(a.dataset, cat, "ground_truth", defect, stem + "_mask.png")).convert("L"))
                    masks.append((m > 0).astype(np.uint8))
        pix_scores = np.concatenate([m.ravel() for m in maps])
        pix_labels = np.concatenate([m.ravel() for m in masks]) > 0
        img_labels = [bool(m.any()) for m in masks]
        out[cat] = {
            "au_pro": float(au_pro(maps, masks, a.fpr_limit)),
            "pixel_auroc": float(auroc(pix_scores, pix_labels)),
            "image_auroc": float(auroc([m.max() for m in maps], img_labels)),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

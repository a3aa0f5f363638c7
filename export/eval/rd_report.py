"""rd.md / rd.png / rd.csv from per-image CSVs of several rd_eval.py runs
(e.g. the baselines once, the ldz sweep of a new model separately):

    python3 export/eval/rd_report.py OUT_DIR A/rd_per_image.csv B/rd_per_image.csv ...

Later files win for the same (codec, quality, image); means over images as
in rd_eval.py; only settings present for every image are kept.
"""

import csv
import os
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rd_eval  # noqa: E402


def main():
    out, paths = sys.argv[1], sys.argv[2:]
    rows = {}
    for p in paths:
        with open(p, newline="") as f:
            for r in csv.DictReader(f):
                rows[(r["codec"], int(r["quality"]), r["image"])] = r
    images = {k[2] for k in rows}
    groups = defaultdict(list)
    for (c, q, _), r in rows.items():
        groups[(c, q)].append(r)
    summary = defaultdict(list)
    order = ["ldz", "jpeg", "webp", "avif"]
    for (c, q) in sorted(groups, key=lambda k: (order.index(k[0]) if k[0] in order else 9, k[1])):
        g = groups[(c, q)]
        if len(g) != len(images):
            continue
        mean = {k: float(np.mean([float(r[k]) for r in g]))
                for k in rd_eval.METRICS + ["enc_s", "dec_s"]}
        summary[c].append(dict(codec=c, quality=q, **mean))
    os.makedirs(out, exist_ok=True)
    summary = dict(summary)
    ref = "ldz" if "ldz" in summary else None
    rd_eval.write_md(os.path.join(out, "rd.md"), summary, ref, len(images))
    rd_eval.write_plot(os.path.join(out, "rd.png"), summary, len(images))
    fields = ["codec", "quality", "bpp", "psnr", "msssim", "lpips", "enc_s", "dec_s"]
    with open(os.path.join(out, "rd.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for rs in summary.values():
            for r in rs:
                w.writerow({k: r[k] for k in fields})
    print(f"wrote {out}/rd.md, rd.png, rd.csv ({len(images)} images)")


if __name__ == "__main__":
    main()

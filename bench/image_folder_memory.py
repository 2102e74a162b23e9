"""Image-folder loading memory: peak RSS of `gradwise.data.load_data` on a folder of small PNGs (one sub-folder per
class), each source tree in a fresh process, so a change can be measured against the code before it:

    git archive <commit> src | tar -x -C /tmp/before
    OMP_NUM_THREADS=1 python bench/image_folder_memory.py --images 20000 --src /tmp/before/src src

The peak is the process's RSS high-water mark above its RSS after the imports (both load torch, numpy, pandas,
PIL). The images are written once (seeded) under --dir and reused. `--train` measures one epoch of `gradwise.train`
instead (a small CNN, the doctor on), loading included: the whole run's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, images: int, size: int = 32, classes: int = 10) -> Path:
    from PIL import Image

    folder = root / f"images_{images}_{size}"
    if (folder / ".done").exists():
        return folder
    rng = np.random.default_rng(0)
    for i in range(images):
        cls = folder / f"class{i % classes}"
        cls.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(cls / f"{i:06d}.png")
    (folder / ".done").write_text("")
    return folder


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(folder: Path, train: bool = False) -> None:
    import pandas  # noqa: F401
    import PIL.Image  # noqa: F401
    import torch

    from gradwise.config import load_config
    from gradwise.data import load_data

    torch.set_num_threads(1)
    base = _rss_mb()
    t0 = time.perf_counter()
    if train:
        import gradwise

        with tempfile.TemporaryDirectory() as out:
            run = gradwise.train(None, [f"data.dataset={folder}", "model.name=cnn2d", "train.epochs=1",
                                        "train.progress=none", f"out={out}/run"])
            x = run.extras["bundle"].train[0]
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"seconds": seconds, "peak_mb": peak - base, "train": list(x.shape),
                          "dtype": str(x.dtype).removeprefix("torch.")}))
        return
    cfg = load_config(None, [f"data.dataset={folder}"])
    bundle = load_data(cfg.data, cfg.seed)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak - base, "train": list(bundle.train[0].shape),
                      "dtype": str(bundle.train[0].dtype).removeprefix("torch.")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--src", nargs="+", default=["src"], help="source trees to compare (PYTHONPATH of each child)")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "gradwise-image-folder")
    ap.add_argument("--train", action="store_true", help="one epoch of gradwise.train (loading included)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.train)
        return
    folder = make_folder(args.dir, args.images)
    print(f"{args.images} PNGs of 32x32 RGB in 10 classes; load average {os.getloadavg()[0]:.1f}")
    what = "one epoch of gradwise.train (cnn2d)" if args.train else "load_data"
    print(f"measured: {what}")
    print("| source | seconds | peak RSS above the imports | train tensor |")
    print("|---|---|---|---|")
    for src in args.src:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(src).resolve())}
        proc = subprocess.run([sys.executable, __file__, "--child", str(folder), *(["--train"] if args.train else [])],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {src} | {r['seconds']:.1f} | {r['peak_mb']:.0f} MB | {r['train']} {r['dtype']} |")


if __name__ == "__main__":
    main()

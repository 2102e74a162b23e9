"""Export figures for the README: time to export each built-in model, and how far each export is from torch.

Trains an MLP on iris and a cnn1d and a transformer on MNIST-1D (default sizes, a few epochs), exports each to ONNX,
TorchScript and safetensors, and runs the ONNX file in onnxruntime and the TorchScript file on the run's raw test
rows against the trained model (eager torch, on the rows as the run preprocessed them).

    python bench/export.py [--epochs 3] [--out runs/bench-export]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import gradwise
from gradwise.data.datasets import open_source
from gradwise.inference import load_run

MODELS = {
    "mlp (iris)": ["data.dataset=iris", "model.name=mlp"],
    "cnn1d (MNIST-1D)": ["data.dataset=mnist1d", "model.name=cnn1d"],
    "transformer (MNIST-1D)": ["data.dataset=mnist1d", "model.name=transformer"],
}


def raw_test_rows(run_dir: Path) -> tuple[np.ndarray, torch.Tensor]:
    loaded = load_run(run_dir)
    source = open_source(loaded.config.data)
    if hasattr(source, "frame"):
        raw = source.frame.iloc[loaded.bundle.split_indices["test"]][loaded.preprocessor.columns].to_numpy(np.float64)
    else:
        raw = np.asarray(source.test[0])
    return raw.astype(np.float32), loaded.bundle.test[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-export"))
    args = parser.parse_args()
    import onnxruntime as ort

    print("| model | parameters | test rows | format | export s | file KiB | max abs diff vs torch |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, over in MODELS.items():
        out = args.out / name.split()[0]
        run = gradwise.train(None, [*over, f"train.epochs={args.epochs}", "train.progress=none", f"out={out}"])
        raw, x_test = raw_test_rows(run.dir)
        with torch.no_grad():
            expected = run.model.eval()(x_test).numpy()
        params = sum(p.numel() for p in run.model.parameters())
        for fmt in ("onnx", "torchscript", "safetensors"):
            start = time.perf_counter()
            path = run.export(fmt)
            seconds = time.perf_counter() - start
            if fmt == "onnx":
                got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": raw})[0]
            elif fmt == "torchscript":
                with torch.no_grad():
                    got = torch.jit.load(str(path))(torch.from_numpy(raw)).numpy()
            else:
                got = None
            diff = f"{np.abs(got - expected).max():.1e}" if got is not None else "(weights: bit-identical)"
            print(f"| {name} | {params:,} | {len(raw)} | {fmt} | {seconds:.1f} | {path.stat().st_size / 1024:.0f} | "
                  f"{diff} |", flush=True)


if __name__ == "__main__":
    main()

"""The README's results table: built-in models with the default recipe (no flags but the model and dataset).

Each row is `gradwise train data.dataset=D model.name=M` with everything else at its default (AdamW 3e-3, warmup
+ cosine, clipping 1.0, early stopping on val loss, batch 128, 30 epochs). Prints test accuracy (R² and MAE for
the regression set) and wall time per row, as a Markdown table.

    python bench/models_table.py [--only mnist1d] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import gradwise

ROWS = [
    ("mnist1d", "mlp", []),
    ("mnist1d", "cnn1d", []),
    ("mnist1d", "gru", []),
    ("mnist1d", "lstm", []),
    ("mnist1d", "transformer", []),
    ("mnist1d", "transformer", ["model.options.patch_size=4"]),
    ("digits", "mlp", []),
    ("wine", "mlp", []),
    ("breast_cancer", "mlp", []),
    ("diabetes", "mlp", []),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=None, help="run only this dataset")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| dataset | model | extra | test metric | epochs | wall time |")
    print("| --- | --- | --- | --- | --- | --- |")
    for dataset, model, extra in ROWS:
        if args.only and dataset != args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run = gradwise.train(None, [f"data.dataset={dataset}", f"model.name={model}", f"seed={args.seed}",
                                        "train.progress=none", f"out={tmp}/run", *extra])
            seconds = time.perf_counter() - t0
        test = run.summary["test"]
        if "test_accuracy" in test:
            metric = f"accuracy {100 * test['test_accuracy']:.1f}%"
        else:
            metric = f"R² {test['test_r2']:.3f}, MAE {test['test_mae']:.1f}"
        print(f"| {dataset} | {model} | {' '.join(extra) or '-'} | {metric} | {len(run.history)} | {seconds:.1f} s |",
              flush=True)


if __name__ == "__main__":
    main()

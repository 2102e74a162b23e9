"""SMS Spam Collection (examples/sms_spam.yaml): test accuracy, spam F1 and wall time of the text models.

Each model trains from its example config (examples/sms_spam.yaml: embedding_bag, examples/sms_spam_gru.yaml: gru;
lstm and transformer: the GRU's config with model.name changed), on three seeds (the seed also draws the split).
The always-"ham" baseline is measured on each run's own test split; the published linear SVM on word tokens is
~97.6% (the dataset's README, Almeida et al. 2011). Wall time is the run's `wall_seconds` (loading, tokenizing and
training; not the Python start-up), and CPU the process's CPU seconds over the same span: on a machine shared with
other jobs the wall time grows, the CPU time hardly does (an idle 2-core machine runs the run in about its CPU time,
or less with two threads).

    python bench/text_sms.py                        # embedding_bag and gru, seeds 0 1 2
    python bench/text_sms.py --models embedding_bag,gru,lstm,transformer --seeds 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import gradwise

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"embedding_bag": ("sms_spam.yaml", []), "gru": ("sms_spam_gru.yaml", []),
           "lstm": ("sms_spam_gru.yaml", ["model.name=lstm"]),
           "transformer": ("sms_spam_gru.yaml", ["model.name=transformer", "model.hidden_size=64", "optim.lr=1e-3"])}


def one(model: str, seed: int, out: Path) -> dict[str, float]:
    config, extra = CONFIGS[model]
    overrides = [*extra, f"seed={seed}", "train.progress=none", f"out={out}"]
    cpu = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradwise.train(ROOT / "examples" / config, overrides)
    cpu = time.process_time() - cpu
    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "data_report.json").read_text())
    spam = summary["test_per_class"]
    support = spam["support"]
    return {"accuracy": summary["test"]["test_accuracy"], "spam_f1": spam["f1"][1],
            "spam_recall": spam["recall"][1], "always_ham": support[0] / sum(support),
            "wall": summary["wall_seconds"], "cpu": cpu, "threads": summary["threads"],
            "epochs": summary["epochs_completed"],
            "max_length": report["text"]["max_length"], "vocab": report["text"]["tokenizer"]["vocab_size"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="embedding_bag,gru")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            results = [one(model, seed, Path(tmp) / f"{model}-{seed}") for seed in seeds]
            for seed, r in zip(seeds, results, strict=True):
                print(f"{model:14s} seed {seed}: accuracy {r['accuracy']:.4f}  spam F1 {r['spam_f1']:.4f}  spam recall "
                      f"{r['spam_recall']:.4f}  always-ham {r['always_ham']:.4f}  {r['epochs']} epochs  "
                      f"{r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['threads']} thread(s)  (vocab {r['vocab']}, "
                      f"max_length {r['max_length']})", flush=True)
            rows.append((model, results))
    print("\n| model | test accuracy (mean, min) | spam F1 (mean, min) | wall s (mean) | CPU s (mean) |\n"
          "|---|---|---|---|---|")
    ham = [r["always_ham"] for _, rs in rows for r in rs]
    print(f"| always ham (this split) | {statistics.mean(ham):.2%} | 0 | - | - |")
    for model, rs in rows:
        acc, f1 = [r["accuracy"] for r in rs], [r["spam_f1"] for r in rs]
        print(f"| {model} | {statistics.mean(acc):.2%} ({min(acc):.2%}) | {statistics.mean(f1):.3f} "
              f"({min(f1):.3f}) | {statistics.mean(r['wall'] for r in rs):.1f} | "
              f"{statistics.mean(r['cpu'] for r in rs):.1f} |")


if __name__ == "__main__":
    main()

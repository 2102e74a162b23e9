"""Wall time of the doctor's pre-flight (`Preflight.run`, once per fit) on a few small setups, this tree against
another source tree (a baseline checkout) in the same run.

Each setup is timed in a fresh subprocess per tree, the trees alternating round by round so that a machine shared
with other work slows both alike; the medians and their ratio are printed.

    python bench/preflight_time.py --baseline /tmp/base/src            # ratio of this tree to the baseline
    python bench/preflight_time.py --baseline /tmp/base/src --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"

# One setup per line: a model and a data set read by the pre-flight as a gradwise in-memory loader.
CHILD = r'''
import json, statistics, sys, time, types
import torch
from torch import nn
from sklearn.datasets import load_breast_cancer, load_digits
from gradwise.doctor.preflight import Preflight

torch.set_num_threads(1)

def loader(x, y, bs=64):
    return types.SimpleNamespace(x=torch.tensor(x, dtype=torch.float32), y=torch.tensor(y), batch_size=bs)

def setups():
    xd, yd = load_digits(return_X_y=True)
    xb, yb = load_breast_cancer(return_X_y=True)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    cnn = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(1024, 10))
    bc = nn.Sequential(nn.Linear(30, 64), nn.Tanh(), nn.Linear(64, 2))
    yield "digits_mlp", mlp, loader(xd[:1400], yd[:1400]), loader(xd[1400:], yd[1400:])
    yield "digits_cnn", cnn, loader(xd[:1400] / 16, yd[:1400]), loader(xd[1400:] / 16, yd[1400:])
    yield "breast_cancer_raw", bc, loader(xb[:450], yb[:450]), loader(xb[450:], yb[450:])

out = {}
for name, model, train, val in setups():
    times = []
    for _ in range(int(sys.argv[1])):
        torch.manual_seed(0)
        t0 = time.perf_counter()
        pre = Preflight(model, nn.CrossEntropyLoss(), train, val, None, torch.device("cpu"), task="classification")
        pre.run()
        times.append(time.perf_counter() - t0)
    out[name] = {"seconds": statistics.median(times), "findings": sorted(f.code for f in pre.findings)}
print(json.dumps(out))
'''


def measure(src: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(repeats)], env=env, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, type=Path, help="the other tree's src/ folder")
    ap.add_argument("--rounds", type=int, default=5, help="subprocesses per tree (alternating)")
    ap.add_argument("--repeats", type=int, default=3, help="pre-flights per setup in each subprocess")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"this": [], "baseline": []}
    for _ in range(args.rounds):
        runs["baseline"].append(measure(args.baseline, args.repeats))
        runs["this"].append(measure(HERE, args.repeats))
    print(f"{'setup':<20} {'baseline s':>10} {'this s':>10} {'ratio':>7}  findings (same?)")
    for name in runs["this"][0]:
        base = statistics.median(r[name]["seconds"] for r in runs["baseline"])
        this = statistics.median(r[name]["seconds"] for r in runs["this"])
        same = runs["this"][0][name]["findings"] == runs["baseline"][0][name]["findings"]
        print(f"{name:<20} {base:>10.4f} {this:>10.4f} {this / base:>7.2f}  {runs['this'][0][name]['findings']} "
              f"({'same' if same else 'DIFFERENT'})")


if __name__ == "__main__":
    main()

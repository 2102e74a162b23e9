"""What the report package costs a run: the step log's per-step CPU time, report.html's end-of-run time, and
bench/overhead.py's gradwise.fit with the report callbacks off / step log only / step log + report (the default),
interleaved in one process (process CPU time and wall time; on a loaded machine trust the CPU figures).

    python bench/report_overhead.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import overhead as ob  # noqa: E402 (bench/overhead.py's data, model and fit call)

import gradwise  # noqa: E402
import gradwise.report as rep  # noqa: E402
from gradwise.report.steps import StepLog  # noqa: E402
from gradwise.report.writer import ReportWriter  # noqa: E402


def step_log_us(n: int = 50_000) -> float:
    """StepLog.on_batch_end with log_every=10 on a stand-in trainer: CPU microseconds per step, best of 5."""
    with tempfile.TemporaryDirectory() as tmp:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        tr = types.SimpleNamespace(step=0, epoch=0, actions=[], last_loss=torch.zeros(()), optimizer=opt,
                                   is_main=True, run_dir=types.SimpleNamespace(path=Path(tmp)), resumed=False,
                                   device=torch.device("cpu"), callbacks=types.SimpleNamespace(callbacks=[]))
        log = StepLog(10)
        log.on_fit_start(tr)
        losses = [torch.rand(()) for _ in range(100)]
        best = []
        for _ in range(5):
            t0 = time.process_time()
            for i in range(n):
                tr.step += 1
                tr.last_loss = losses[i % 100]
                log.on_batch_end(tr)
            best.append((time.process_time() - t0) / n * 1e6)
    return min(best)


def report_ms(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, doctor: bool, tmp: str
              ) -> tuple[float, float, int]:
    """report.html of bench/overhead.py's run rewritten 7 times: best wall and CPU milliseconds, page size."""
    run = gradwise.fit(ob.model(0), (x, y), val=(xv, yv), loss="cross_entropy", optimizer="adamw", lr=3e-3,
                       schedule="constant", clip_grad=None, epochs=20, batch_size=64, doctor=doctor, progress="none",
                       out=f"{tmp}/doctor-{doctor}", early_stopping=False)
    tr = run.extras["trainer"]
    writer = next(c for c in tr.callbacks.callbacks if isinstance(c, ReportWriter))
    walls, cpus = [], []
    for _ in range(7):
        c0, t0 = time.process_time(), time.perf_counter()
        writer._write(tr, run.summary, predict=True)
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - t0)
    return min(walls) * 1e3, min(cpus) * 1e3, (run.dir / "report.html").stat().st_size


def fit(x: torch.Tensor, y: torch.Tensor, xv: torch.Tensor, yv: torch.Tensor, out: str, epochs: int = 20) -> float:
    """bench/overhead.py's gradwise.fit with one torch thread: `threads: auto` follows the machine's load, and a
    count that changes between runs would swamp what is measured here."""
    t0 = time.perf_counter()
    gradwise.fit(ob.model(0), (x, y), val=(xv, yv), loss="cross_entropy", optimizer="adamw", lr=3e-3,
                 schedule="constant", clip_grad=None, epochs=epochs, batch_size=64, doctor=False, progress="none",
                 out=out, early_stopping=False, threads=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"step log: {step_log_us():.2f} us of CPU per step (log_every=10, row writes included)")
    x, y, xv, yv = ob.data()
    variants = {
        "report callbacks off": lambda cfg: [],
        "steps.jsonl only": lambda cfg: [StepLog(cfg.train.log_every)],
        "steps.jsonl + report.html (default)": lambda cfg: [StepLog(cfg.train.log_every), ReportWriter()],
    }
    original = rep.run_callbacks
    with tempfile.TemporaryDirectory() as tmp:
        for doctor in (False, True):
            wall, cpu, size = report_ms(x, y, xv, yv, doctor, tmp)
            print(f"report.html, doctor {'on ' if doctor else 'off'}: {wall:.1f} ms wall, {cpu:.1f} ms CPU, "
                  f"{size / 1024:.0f} KiB")
        walls: dict[str, list[float]] = {k: [] for k in variants}
        cpus: dict[str, list[float]] = {k: [] for k in variants}
        try:
            for i, make in enumerate(variants.values()):  # warm-up: imports (sklearn.metrics), allocator
                rep.run_callbacks = make
                fit(x, y, xv, yv, f"{tmp}/warm{i}", epochs=1)
            for r in range(args.repeats):  # interleaved, so drift in machine load hits all alike
                for i, (name, make) in enumerate(variants.items()):
                    rep.run_callbacks = make
                    c0 = time.process_time()
                    walls[name].append(fit(x, y, xv, yv, f"{tmp}/r{r}-{i}"))
                    cpus[name].append(time.process_time() - c0)
        finally:
            rep.run_callbacks = original
    w0, c0 = statistics.median(walls["report callbacks off"]), statistics.median(cpus["report callbacks off"])
    print(f"bench/overhead.py's gradwise.fit (20 x 57 steps, 1 thread), median of {args.repeats}:")
    for name in variants:
        w, c = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"  {name:36s}: wall {w:.3f} s ({w / w0:.3f}x)  process CPU {c:.3f} s ({c / c0:.3f}x)")


if __name__ == "__main__":
    main()

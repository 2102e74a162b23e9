"""The doctor's case suite: faulty training setups and healthy controls, judged with the doctor's defaults.

For each case it prints the codes the fault should produce against what the doctor found (warnings and errors;
info findings in brackets), then the recall, the false alarms on the healthy controls (any warning or error) and,
for the repairable cases, whether `doctor.repair=true` turned the run into one about as good as the same model
trained the careful way (the case's `fix` applied; see `doctor.cases.repaired`). The case definitions live in
bench/doctor/cases.py.

    python bench/doctor_cases.py              # everything (a few minutes on 2 cores)
    python bench/doctor_cases.py -k lr_ -j 2  # cases whose name contains 'lr_', two processes
    python bench/doctor_cases.py --no-repair
    python bench/doctor_cases.py --seed 1     # the same faults with other splits, inits and batch orders
    python bench/doctor_cases.py --keep /tmp/cases   # keep the run directories (metrics.jsonl, findings.jsonl)

Goals: recall >= 95%, no warning or error on a control, repair recovers >= 80% of the repairable cases.
Exit status 0 when all goals are met.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from doctor.cases import CASE_LIST, CASES, CaseResult, run_case, run_reference

from gradwise.doctor import CODES

GOAL_RECALL, GOAL_REPAIR = 0.95, 0.80


@dataclass
class Outcome:
    plain: CaseResult
    repair: CaseResult | None


def _one(name: str, out: str, repair: bool, seed: int = 0) -> Outcome:
    torch.set_num_threads(1)  # two cases side by side on a 2-core machine
    c = CASES[name]
    plain = run_case(c, f"{out}/{name}", seed=seed)
    fixed = None
    if repair and c.repairable:
        fixed = run_case(c, f"{out}/{name}", repair=True, seed=seed,
                         reference=run_reference(c, f"{out}/{name}", seed=seed))
    return Outcome(plain, fixed)


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    faulty = [o.plain for o in outcomes if not o.plain.control]
    controls = [o.plain for o in outcomes if o.plain.control]
    expected = sum(len(r.expect) for r in faulty)
    hit = sum(len(r.expect) - len(r.missing) for r in faulty)
    produced = {c for r in faulty for c in r.expect if c not in r.missing}
    repairs = [o.repair for o in outcomes if o.repair is not None]
    return {
        "recall": hit / max(expected, 1), "expected": expected, "found": hit,
        "codes_covered": sorted(produced), "codes_missing": sorted(set(CODES) - produced),
        "false_alarms": {r.name: r.alarms for r in controls if r.alarms}, "controls": len(controls),
        "faulty": len(faulty), "repairs": len(repairs), "repaired": sum(bool(r.repaired) for r in repairs),
        "extra": {r.name: r.unexpected for r in faulty if r.unexpected},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="processes (each uses one torch thread)")
    ap.add_argument("--no-repair", action="store_true", help="skip the runs with doctor.repair=true")
    ap.add_argument("--seed", type=int, default=0, help="re-draw every split, init and batch order (0: as written)")
    ap.add_argument("--keep", default="", help="write the run directories here instead of a temporary folder")
    args = ap.parse_args(argv)
    names = [c.name for c in CASE_LIST if args.k in c.name]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or tmp
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs) as pool:
                outcomes = list(pool.map(_one, names, [out] * len(names), [not args.no_repair] * len(names),
                                         [args.seed] * len(names)))
        else:
            outcomes = [_one(n, out, not args.no_repair, args.seed) for n in names]
    print(f"{'case':34s} {'family':7s} {'data':13s} expected -> found  [info]")
    for o in outcomes:
        r, c = o.plain, CASES[o.plain.name]
        mark = "ok  " if not r.missing and not (r.control and r.alarms) else "MISS" if r.missing else "FA  "
        info = [k for k, v in r.found.items() if v == "info"]
        exp = ",".join(r.expect) or "(healthy)"
        found = ",".join(f"{k}{'!' if v == 'error' else ''}" for k, v in r.alarms.items()) or "-"
        line = f"{mark} {r.name:29s} {c.family:7s} {c.dataset:13s} {exp} -> {found}"
        if info:
            line += f"  [{','.join(info)}]"
        if o.repair is not None:
            acts = [a.get("changes", {}).get("finding") for a in o.repair.actions]
            line += f"  | repair: {'RECOVERED' if o.repair.repaired else 'not recovered'} ({', '.join(map(str, acts))})"
        print(line + f"  {r.seconds:.1f}s")
    s = summarize(outcomes)
    print()
    print(f"faulty cases: {s['faulty']}, controls: {s['controls']}, "
          f"families: {sorted({CASES[o.plain.name].family for o in outcomes})}, "
          f"datasets: {sorted({CASES[o.plain.name].dataset for o in outcomes})}")
    print(f"recall: {s['found']}/{s['expected']} = {s['recall']:.1%} (goal >= {GOAL_RECALL:.0%})")
    print(f"codes produced by a real fault: {len(s['codes_covered'])}/{len(CODES)}"
          + (f"; never produced: {', '.join(s['codes_missing'])}" if s["codes_missing"] else ""))
    print(f"false alarms on healthy controls: {len(s['false_alarms'])}/{s['controls']} {s['false_alarms'] or ''}")
    if s["repairs"]:
        print(f"repair: {s['repaired']}/{s['repairs']} repairable cases recovered = "
              f"{s['repaired'] / s['repairs']:.0%} (goal >= {GOAL_REPAIR:.0%})")
    print(f"other warnings on faulty cases (not counted): {sum(len(v) for v in s['extra'].values())}")
    print(f"wall time {time.perf_counter() - t0:.0f}s")
    ok = (s["recall"] >= GOAL_RECALL and not s["false_alarms"]
          and (not s["repairs"] or s["repaired"] / s["repairs"] >= GOAL_REPAIR))
    if args.k == "":
        ok = ok and not s["codes_missing"]
    print("GOALS MET" if ok else "GOALS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

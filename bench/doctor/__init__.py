"""The doctor's evaluation sets, kept out of the library: the development suite (`cases.py`: faulty setups and
healthy controls the rules were developed against, run by bench/doctor_cases.py) and the hold-out and blind sets
(`sets/`: lists of data-like cases on one harness, `harness.py`, with shared `data.py` and `models.py` builders;
run by `python bench/doctor/run.py SET`). Scripts in bench/ import it as `doctor` (bench/ is their sys.path[0]);
tests put bench/ on sys.path first."""

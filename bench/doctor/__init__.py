"""The doctor's development suite (`cases.py`: faulty setups and healthy controls the rules were developed
against), kept out of the library. Scripts in bench/ import it as `doctor.cases` (bench/ is their sys.path[0]);
tests put bench/ on sys.path first."""

"""Where a study lives, who may start its next trial, and what happens to trials whose process died.

Three storages:

* the default, a journal file in the study directory (`studies/<name>/study.journal`): one process, or `--workers K`
  processes on this machine (optuna's JournalFileBackend appends under a file lock; SQLite would make parallel
  writers fail with "database is locked", optuna#820);
* `sqlite:///path.db`: one process at a time;
* `postgresql://user:password@host:5432/db`: any number of machines running the same command (RDBStorage with
  pre-ping, so a connection the server dropped between two trials is replaced instead of failing the trial).

The trial budget is exact across processes: a trial is started only while holding a study-wide lock (a file lock
next to a file storage, a PostgreSQL advisory lock for a server) and only if fewer than N trials exist that count.
optuna's MaxTrialsCallback alone checks *after* each trial, so K workers overshoot by up to K-1 trials.

Trials whose process died (kill -9, power cut) are left RUNNING by optuna. Every trial records its owner (host,
pid, process start time); before starting a trial a worker marks RUNNING trials of dead local processes FAIL and
enqueues a retry with the same parameters (optuna's RetryFailedTrialCallback convention: system attrs
`failed_trial`/`retry_history`). On PostgreSQL a heartbeat does the same for processes on other machines. A FAIL
trial that was retried does not count towards N, so an interrupted study ends with exactly N counted trials.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import socket
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from gradwise.config import mask_secrets, url_password
from gradwise.errors import ConfigError

OWNER_KEY = "gradwise:owner"
RETRY_LIMIT = 3  # a trial that kills its process three times is left failed rather than retried forever
HEARTBEAT_SECONDS = 10
GRACE_SECONDS = 60

ACCEPTED = ("accepted storage forms: (none) a journal file in the study directory; journal:PATH or a path ending "
            "in .journal/.log; sqlite:///PATH.db (one process at a time); "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE (many machines)")


@dataclass
class StorageSpec:
    kind: Literal["journal", "sqlite", "postgresql"]
    url: str  # canonical form, passed on to worker processes
    path: Path | None  # the file, for journal and sqlite
    display: str  # for messages: the password hidden

    @property
    def is_file(self) -> bool:
        return self.kind in ("journal", "sqlite")

    def mask(self, text: str) -> str:
        """`text` (e.g. a driver's error message) with this storage's password hidden."""
        return mask_secrets(text, url_password(self.url))


def shown(url: str) -> str:
    """A storage URL as every message shows it: the password replaced by ***, at most 200 characters.

    Masked from the text as given, not from a parsed URL: the URLs that reach messages are the ones that did not
    parse (a port that is not a number, an unknown scheme), and a password must not print because the rest of the
    URL is wrong."""
    text = mask_secrets(url, url_password(url))
    return text if len(text) <= 200 else text[:199] + "…"


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def parse_storage(url: str | None, study_dir: Path, workers: int = 1) -> StorageSpec:
    """Check a --storage value and put it in canonical form (absolute paths), or raise a ConfigError."""
    if url is None or url == "":
        path = (study_dir / "study.journal").resolve()
        return StorageSpec("journal", f"journal:{path}", path, str(path))
    text = url.strip()
    if text.startswith("journal:"):
        rest = text[len("journal:"):]
        rest = "/" + rest[3:] if rest.startswith("///") else rest[2:] if rest.startswith("//") else rest
        if not rest:
            raise ConfigError(f"--storage '{shown(url)}': a journal storage needs a file path, e.g. "
                              f"journal:studies/x.journal. ({ACCEPTED})")
        path = Path(rest).expanduser().resolve()
        return StorageSpec("journal", f"journal:{path}", path, str(path))
    if "://" not in text and text.endswith((".journal", ".log", ".jsonl")):
        path = Path(text).expanduser().resolve()
        return StorageSpec("journal", f"journal:{path}", path, str(path))
    if text.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        try:
            database = make_url(text).database
        except Exception:
            database = None
        if not database or database == ":memory:" or not text.startswith("sqlite:///"):
            raise ConfigError(f"--storage '{shown(url)}' is not a usable SQLite URL: write sqlite:///relative/path.db "
                              "or sqlite:////absolute/path.db (an in-memory database cannot be resumed). "
                              f"({ACCEPTED})")
        if workers > 1:
            raise ConfigError(f"--storage '{shown(url)}' with --workers {workers}: SQLite fails with 'database is "
                              "locked' when several processes write (optuna#820). Leave --storage out (the default "
                              "journal file handles parallel workers) or use a postgresql:// URL.")
        path = Path(database).expanduser().resolve()
        return StorageSpec("sqlite", f"sqlite:///{path}", path, str(path))
    if text.startswith(("postgresql://", "postgresql+", "postgres://")):
        return _parse_postgres(text, url)
    raise ConfigError(f"--storage '{shown(url)}' is not a storage gradwise understands; {ACCEPTED}.")


def _parse_postgres(text: str, original: str) -> StorageSpec:
    from sqlalchemy.engine import make_url

    if text.startswith("postgres://"):  # libpq's short scheme; SQLAlchemy only knows postgresql://
        text = "postgresql://" + text[len("postgres://"):]
    try:
        parsed = make_url(text)
    except Exception as exc:  # SQLAlchemy's message may quote the URL, password and all
        secret = url_password(original)
        raise ConfigError(f"--storage '{shown(original)}' is not a valid PostgreSQL URL "
                          f"({mask_secrets(_first_line(exc), secret)}); write "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE.") from None
    display = shown(parsed.render_as_string(hide_password=True))  # also a ?password=... in the query
    if not parsed.database:
        raise ConfigError(f"--storage '{display}' names no database; write postgresql://USER:PASSWORD@HOST:PORT/"
                          "DATABASE (create it first, e.g. `createdb optuna`).")
    if "+" not in parsed.drivername:
        # a bare postgresql:// means psycopg2 to SQLAlchemy 2.0 but psycopg (3) to 2.1: name the driver that is
        # installed, psycopg2 first (the one gradwise[postgres] installs)
        driver = next((d for d in ("psycopg2", "psycopg") if _module_available(d)), "psycopg2")
        parsed = parsed.set(drivername=f"postgresql+{driver}")
    driver = parsed.get_driver_name()
    module = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000"}.get(driver)
    if module is None:
        raise ConfigError(f"--storage '{display}': the driver '{driver}' is not supported; use postgresql:// "
                          "(psycopg2).")
    if not _module_available(module):
        pip = "psycopg2-binary" if module == "psycopg2" else module
        raise ConfigError(f"--storage '{display}' needs the PostgreSQL driver {module}, which is not installed. "
                          f"Install it with `pip install {pip}` (or `pip install gradwise[postgres]`).")
    return StorageSpec("postgresql", parsed.render_as_string(hide_password=False), None, display)


def open_storage(spec: StorageSpec) -> BaseStorage:
    """An optuna storage for the spec. Connection problems become ConfigErrors that say what to check."""
    if spec.kind == "journal":
        assert spec.path is not None
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        lock = JournalFlock(spec.path.with_name(spec.path.name + ".flock"))
        backend = optuna.storages.journal.JournalFileBackend(str(spec.path), lock_obj=lock)
        return optuna.storages.JournalStorage(backend)
    if spec.kind == "sqlite":
        assert spec.path is not None
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return optuna.storages.RDBStorage(spec.url, engine_kwargs={"connect_args": {"timeout": 60}})
        except Exception as exc:
            raise ConfigError(f"cannot open the SQLite study database {spec.display}: "
                              f"{spec.mask(_first_line(exc))}") from None
    try:
        # Machines that start together on a fresh database would all create optuna's tables at once, and
        # PostgreSQL rejects the losers (duplicate key in pg_type): one at a time, under an advisory lock.
        schema_lock = PostgresLock(spec.url, "(schema)")
        try:
            with schema_lock, warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
                return optuna.storages.RDBStorage(
                    spec.url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS, heartbeat_stale_trial_callback=_retry_stale_callback)
        finally:
            schema_lock.close()
    except Exception as exc:
        raise ConfigError(f"cannot use the PostgreSQL storage {spec.display}: {spec.mask(_first_line(exc))}. "
                          "Check that the server runs and that the URL's host, port, user, password and database "
                          "are right.") from None


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ----------------------------------------------------------------------------------------------- the study lock


class StudyLock:
    """Mutual exclusion between every process of one study, held only while the next trial is being started."""

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def close(self) -> None: ...

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


try:  # the base class is not exported; the backend only calls acquire() and release()
    from optuna.storages.journal._file import BaseJournalFileLock as _JournalLockBase
except ImportError:  # pragma: no cover
    _JournalLockBase = object  # type: ignore[assignment,misc]


class JournalFlock(_JournalLockBase):  # type: ignore[misc,valid-type]
    """The journal's write lock as flock(2).

    optuna's default (a symlink, for NFS) outlives a process killed while holding it, and every other process
    then waits out a 30 s grace period; the kernel drops a flock the moment its holder dies. Many machines
    should share PostgreSQL rather than a journal on NFS.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is None:  # opened lazily: a storage object may be created in one process, used in another
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class FileLock(StudyLock):
    """flock(2) on a file next to the storage; the kernel drops it when the holder dies."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def acquire(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class PostgresLock(StudyLock):
    """A session-level advisory lock; the server drops it when the holder's connection dies."""

    def __init__(self, url: str, study: str) -> None:
        import sqlalchemy
        from sqlalchemy.pool import NullPool

        digest = hashlib.sha1(f"gradwise-tune:{study}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)
        self._engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        self._conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._text = sqlalchemy.text

    def acquire(self) -> None:
        self._conn.execute(self._text("SELECT pg_advisory_lock(:k)"), {"k": self.key})

    def release(self) -> None:
        self._conn.execute(self._text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
            self._engine.dispose()


def make_lock(spec: StorageSpec, study: str) -> StudyLock:
    if spec.kind == "postgresql":
        return PostgresLock(spec.url, study)
    assert spec.path is not None
    # not "<file>.lock": that is the name of optuna's own journal lock (a symlink that comes and goes)
    return FileLock(spec.path.with_name(spec.path.name + ".gradwise-lock"))


# ------------------------------------------------------------------------------------ owners and stale trials


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process from /proc, or None where there is no /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[19])


def owner_record() -> dict[str, Any]:
    pid = os.getpid()
    stat = _proc_stat(pid)
    return {"host": socket.gethostname(), "pid": pid, "start": stat[1] if stat else None}


def process_alive(pid: int, start: int | None) -> bool:
    """Whether the process that wrote an owner record still runs (a zombie or a reused pid does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to another user
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False
    return start is None or started == start


def retried_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of trials that were interrupted and replaced by a retry (they do not count towards the budget)."""
    out: set[int] = set()
    for t in trials:
        out.update(int(n) for n in t.system_attrs.get("retry_history", []))
    return out


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that use up the budget: every state (waiting and running included) except retried ones."""
    retried = retried_numbers(trials)
    return [t for t in trials if t.number not in retried]


def add_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Enqueue a WAITING copy of an interrupted trial (same params, same grid point). False past RETRY_LIMIT."""
    history = [int(n) for n in trial.system_attrs.get("retry_history", [])] + [trial.number]
    if len(history) > RETRY_LIMIT:
        return False
    system_attrs: dict[str, Any] = {"failed_trial": history[0], "retry_history": history}
    for key in ("grid_id", "search_space"):  # GridSampler must not hand this grid point out again
        if key in trial.system_attrs:
            system_attrs[key] = trial.system_attrs[key]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={"retry_of": trial.number}, system_attrs=system_attrs))
    return True


def _retry_stale_callback(study: optuna.Study, trial: FrozenTrial) -> None:
    # optuna calls this after failing a trial whose heartbeat stopped (a process on another machine died)
    add_retry(study, trial)


def recover_stale_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose local process is gone and enqueue their retries. Call with the study lock held."""
    storage = study._storage
    host = socket.gethostname()
    recovered = []
    for t in storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_KEY)
        if owner is None:
            # owners are written under the study lock before it is released, and we hold it now: the process that
            # started this trial died in between (or it is not a gradwise trial; then it is stale as well)
            stale = True
        elif owner.get("host") == host:
            stale = not process_alive(int(owner["pid"]), owner.get("start"))
        else:
            stale = False  # another machine's trial: the heartbeat (PostgreSQL) decides
        if not stale:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        add_retry(study, storage.get_trial(t._trial_id))
        recovered.append(t.number)
    return recovered

"""Property-based fuzzing of config overrides: every `KEY=VALUE` either loads or is one clear ConfigError line.

Keys are the real ones (every leaf of the default config), garbled variants of them (doubled dots, case, stray
characters) and random text; values are written as a user types them (YAML text) from ints (huge ones too), floats
(nan, inf, denormals, 1e300), booleans, strings (NUL bytes, 300+ characters, unicode, newlines), lists and nested
mappings. The property: `load_config(None, [f"{key}={value}"])` returns a RunConfig or raises ConfigError whose
message is one line of at most MAX_MESSAGE characters that names the key; never another exception.

CI runs 200 examples; `GRADWISE_FUZZ_EXAMPLES=5000 pytest tests/reliability/test_fuzz_config.py` runs the nightly
size. A small CLI-level fuzz runs a handful of overrides through `python -m gradwise.cli config` (exit 0 or 2, no
traceback).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradwise.config import RunConfig, load_config
from gradwise.errors import ConfigError

EXAMPLES = int(os.environ.get("GRADWISE_FUZZ_EXAMPLES", "200"))
MAX_MESSAGE = 400  # a one-line error a terminal shows whole: values are cut to 80 characters


def _leaves(d: dict[str, Any], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            keys += _leaves(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


KEYS = sorted(_leaves(RunConfig().to_dict()) + ["tune.space.optim.lr", "tune.metric", "tune.trials", "tune.timeout",
                                                  "tune.storage", "data", "model", "train.early_stopping"])


@st.composite
def garbled_keys(draw: st.DrawFn) -> str:
    key = draw(st.sampled_from(KEYS))
    how = draw(st.sampled_from(["double_dot", "lead_dot", "trail_dot", "upper", "insert", "drop", "extra_part",
                                "space", "unicode"]))
    parts = key.split(".")
    i = draw(st.integers(0, len(parts) - 1))
    if how == "double_dot":
        return key.replace(".", "..", 1) if "." in key else key + ".."
    if how == "lead_dot":
        return "." + key
    if how == "trail_dot":
        return key + "."
    if how == "upper":
        return key.upper()
    if how == "insert":
        parts[i] = parts[i] + draw(st.text(min_size=1, max_size=3))
    elif how == "drop":
        parts[i] = parts[i][:-1]
    elif how == "extra_part":
        parts.insert(i + 1, draw(st.sampled_from(["int", "float", "str", "name", "x", "0", "literal['a']"])))
    elif how == "space":
        parts[i] = f" {parts[i]} "
    else:
        parts[i] = parts[i] + "é\u200b"
    return ".".join(parts)


# the key part of an override: no '=' (the first '=' ends the key); everything else goes
random_keys = st.text(st.characters(blacklist_characters="=", blacklist_categories=("Cs",)), min_size=1,
                      max_size=40).filter(lambda k: k.strip() != "")
keys = st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), garbled_keys().filter(lambda k: "=" not in k),
                 random_keys)

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([math.inf, -math.inf, math.nan, 5e-324, 2.2e-308, 1e-310, 1e300, 1e23, -0.0, 0.5,
                                    1.0, 3e-4, 1e308]))
ints = st.one_of(st.integers(-10, 1000), st.integers(), st.integers(min_value=10**18, max_value=10**40),
                 st.sampled_from([0, 1, -1, 2**31, 2**32, 2**63, 2**64, 10**22]))
strings = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["auto", "all", "none", "sgd", "mlp", "iris", "val_loss", "/proc/x", "/etc/passwd", "/dev/null",
                     "a\x00b", "postgresql://u:secret@h:x/db", "*", "['*']",
                     "[[[[[[[[[[", "{a: [1, {b: 2}]}", "!!python/object:os.system", "~", "&a [*a]", "1e", "0x1F",
                     ".inf", "-.inf", ".nan", "1_000", "2020-01-01", "true", "Null", "\n", "\t", " "]),
    # long values (300+ characters, 100k): built, so that statistics do not print them whole
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "/", "."]), st.sampled_from([255, 300, 5000, 100_000])),
)
scalars = st.one_of(ints, floats, st.booleans(), st.none(), strings)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def as_text(value: Any) -> str:
    """The override text a user would type for `value` (YAML flow style; strings raw, as typed on a shell)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf, nan: what a user types
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()


def check_override(key: str, text: str) -> None:
    try:
        cfg = load_config(None, [f"{key}={text}"])
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg, f"not one line: {msg!r}"
        assert len(msg) <= MAX_MESSAGE, f"{len(msg)} characters: {msg[:200]!r}..."
        shown_key = key.strip()
        # the message names the key, or its first part (an unknown section), as typed (cut to 80 characters)
        first = shown_key.split(".")[0].strip()
        assert shown_key[:40] in msg or first[:40] in msg or shown_key.encode("unicode_escape").decode()[:40] in msg \
            or first.encode("unicode_escape").decode()[:40] in msg, f"key {key!r} not named: {msg!r}"
        assert "secret" not in msg, f"password shown: {msg!r}"
    else:
        assert isinstance(cfg, RunConfig)
        RunConfig.model_validate(cfg.to_dict())  # what is written to config.yaml loads again


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys, value=values)
def test_override_loads_or_is_one_clear_line(key: str, value: Any) -> None:
    check_override(key, as_text(value))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys, text=st.text(max_size=60))
def test_raw_override_text(key: str, text: str) -> None:
    # any text at all after '=', not only what YAML would write
    check_override(key, text)


@pytest.mark.parametrize(("key", "text"), [
    ("optim.lr", "true"), ("seed", "1" * 23), ("name", "n" * 300), ("data..dataset", "iris"), ("out", "/proc/x"),
    ("train.epochs", "{a: 1}"),
])
def test_cli_config_exits_0_or_2_without_traceback(key: str, text: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", "config", f"{key}={text}"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "unexpected" not in proc.stderr
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@settings(max_examples=min(EXAMPLES, 8), deadline=None)
@given(key=keys, value=values)
def test_cli_config_fuzz(key: str, value: Any) -> None:
    text = as_text(value)
    if "\x00" in key + text:  # a NUL cannot be passed in argv at all (the OS refuses); load_config covers it
        return
    if len(f"{key}={text}".encode(errors="surrogatepass")) >= 131_072:  # over Linux's MAX_ARG_STRLEN: no argv
        return  # can carry it (the OS refuses with E2BIG); load_config covers such values
    proc = subprocess.run([sys.executable, "-m", "gradwise.cli", "config", f"{key}={text}"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode in (0, 2), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "unexpected" not in proc.stderr

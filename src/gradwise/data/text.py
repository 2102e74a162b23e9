"""Text columns → token ids: a Hugging Face `tokenizers` tokenizer fitted on the training split only.

``data.text: [column, ...]`` marks free-text columns of a table. Order of work, and why:

1. the table is cleaned like any other (labels, rows without a target, duplicates) and split (seeded, stratified);
2. the tokenizer (word, BPE, WordPiece or character; `data.tokenizer`) is trained on the TRAINING texts only, so a
   word that appears only in val/test is out-of-vocabulary there exactly as it would be on new messages;
3. the length every text is padded/truncated to is the ``length_percentile`` of the training lengths (or given);
4. every split is encoded; the out-of-vocabulary rate and the truncated share of each split go into
   data_report.json, where a gap between splits shows a tokenizer fitted on the wrong data.

Inputs to the model are int64 token ids of shape (N, max_length), right-padded with ``PAD_ID`` = 0: the padding
mask is ``ids != 0`` (`padding_mask`). The built-in text models use it (packed sequences, attention key masks,
masked pooling), so padding never changes a prediction; a ``model.factory`` model gets the same ids and derives the
mask the same way. The fitted tokenizer is saved in the run directory as ``tokenizer.json`` (the library's own JSON
format, never a pickle) and re-applied by `gradwise eval` and `gradwise predict`.

A table with text AND other (numeric/categorical) feature columns is refused with a message naming them: the
models here read one token sequence per row. Several text columns are joined into one text, separated by a
``_sep_`` token.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from pandas.api import types as ptypes

from gradwise.errors import CheckpointError, ConfigError, DataError

if TYPE_CHECKING:
    from gradwise.config import DataConfig, TokenizerConfig
    from gradwise.data.datasets import TableSource
    from gradwise.data.prepare import DataBundle

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID = 0  # the trainers give the special tokens the first ids, in the order listed: [PAD] is 0, [UNK] is 1
URL, NUM, SEP = "_url_", "_num_", "_sep_"  # word characters only: one token for the Whitespace pre-tokenizer
TOKENIZER_FILE = "tokenizer.json"
INSTALL = 'pip install "gradwise[text]"'
FREE_TEXT_WORDS = 4  # a string column whose cells average this many words is reported as probably free text


def require_tokenizers() -> Any:
    """The `tokenizers` module, or a ConfigError saying how to install it (it is an optional dependency)."""
    try:
        import tokenizers
    except ImportError:
        raise ConfigError(f"data.text needs the Hugging Face tokenizers package, which is not installed: {INSTALL} "
                          "(or pip install tokenizers).") from None
    return tokenizers


def padding_mask(ids: torch.Tensor) -> torch.Tensor:
    """True at real tokens, False at padding: the mask of a batch of ids gradwise made (for model.factory models)."""
    return ids != PAD_ID


def looks_like_text(values: pd.Series) -> bool:
    """A string column of free text (many distinct values, several words per cell) rather than categories."""
    cells = values.dropna().astype(str)
    if len(cells) < 20 or cells.nunique() < 0.5 * len(cells):
        return False
    return float(cells.head(1000).str.split().str.len().mean()) >= FREE_TEXT_WORDS


def join_texts(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """One text per row: the text columns joined by the separator token (a missing cell is empty text)."""
    parts = [frame[c].astype(object).where(frame[c].notna(), "").map(str) for c in columns]
    if len(parts) == 1:
        return parts[0].tolist()
    return [f" {SEP} ".join(row) for row in zip(*parts, strict=True)]


# --------------------------------------------------------------------------------------------- the tokenizer


def _new_tokenizer(cfg: TokenizerConfig) -> tuple[Any, Any]:
    """An untrained tokenizer of ``cfg.kind`` with the cleaning of ``cfg`` as its normalizer, and its trainer.

    The cleaning lives in the tokenizer's normalizer, so tokenizer.json carries it: predict cleans new text
    exactly as training did without gradwise having to remember how.
    """
    tk = require_tokenizers()
    from tokenizers import Regex, normalizers, pre_tokenizers, trainers

    steps: list[Any] = []
    if cfg.unicode != "none":
        steps.append(getattr(normalizers, cfg.unicode.upper())())
    if cfg.lowercase:
        steps.append(normalizers.Lowercase())
    if cfg.urls == "token":
        steps.append(normalizers.Replace(Regex(r"(?:https?://|www\.)\S+"), f" {URL} "))
    if cfg.numbers == "token":
        steps.append(normalizers.Replace(Regex(r"\d+"), f" {NUM} "))
    special = [PAD, UNK]
    common = {"vocab_size": cfg.vocab_size, "min_frequency": cfg.min_frequency, "special_tokens": special}
    if cfg.kind == "bpe":
        tok = tk.Tokenizer(tk.models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(**common)
    elif cfg.kind == "wordpiece":
        tok = tk.Tokenizer(tk.models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(**common)
    else:  # word, char: a vocabulary of whole pieces
        tok = tk.Tokenizer(tk.models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(**common)
    tok.normalizer = normalizers.Sequence(steps)
    # char: every character is a token (spaces too: they carry the word boundaries); others: words and punctuation
    tok.pre_tokenizer = (pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated") if cfg.kind == "char"
                         else pre_tokenizers.Whitespace())
    return tok, trainer


def _load_tokenizer_file(path: str | Path, where: str) -> Any:
    tk = require_tokenizers()
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{where} = '{p}' is not a file; give a tokenizer.json saved by Hugging Face tokenizers (e.g. "
                        "the one in a gradwise text run's directory).")
    try:
        tok = tk.Tokenizer.from_file(str(p))
    except Exception as exc:  # the library raises its own Exception subclass for any parse problem
        raise CheckpointError(f"{where} = '{p}' is not a tokenizer.json Hugging Face tokenizers can read "
                              f"({' '.join(str(exc).split())[:200]}).") from None
    tok.no_padding()  # gradwise pads and truncates itself (to measure truncation)
    tok.no_truncation()
    return tok


class TextEncoder:
    """The fitted text step of a run: columns → one text per row → ids (N, max_length), padded with PAD_ID."""

    def __init__(self, tokenizer: Any, columns: list[str], max_length: int, settings: dict[str, Any]) -> None:
        self.tokenizer = tokenizer
        self.columns = list(columns)
        self.max_length = int(max_length)
        self.settings = settings  # what was asked (kind, cleaning, how the length was chosen): for reports
        unk = tokenizer.token_to_id(UNK)
        self.unk_id: int | None = None if unk is None else int(unk)

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    @classmethod
    def fit(cls, texts: list[str], cfg: TokenizerConfig, columns: list[str]) -> tuple[TextEncoder, dict[str, Any]]:
        """Train on ``texts`` (the training split's) and choose max_length from their lengths: (encoder, report)."""
        settings = cfg.model_dump()
        if cfg.file:
            tok = _load_tokenizer_file(cfg.file, "data.tokenizer.file")
            pad = tok.token_to_id(PAD)
            if pad != PAD_ID:
                raise DataError(f"data.tokenizer.file = '{cfg.file}' has no {PAD} token with id {PAD_ID} (it has "
                                f"{pad}); gradwise pads with id {PAD_ID}. Use a tokenizer.json a gradwise run saved, "
                                "or leave data.tokenizer.file out to train one.")
        else:
            tok, trainer = _new_tokenizer(cfg)
            tok.train_from_iterator(texts, trainer, length=len(texts))
        lengths = np.array([len(e.ids) for e in tok.encode_batch(texts)], dtype=np.int64)
        if cfg.max_length == "auto":
            length = max(1, math.ceil(float(np.percentile(lengths, cfg.length_percentile))))
            chosen = f"the {cfg.length_percentile:g}th percentile of the training texts' lengths"
        else:
            length, chosen = int(cfg.max_length), "data.tokenizer.max_length"
        settings["max_length"] = length
        enc = cls(tok, columns, length, settings)
        pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}
        report = {"columns": list(columns), "tokenizer": {**settings, "vocab_size_asked": cfg.vocab_size,
                                                          "vocab_size": enc.vocab_size},
                  "max_length": length, "max_length_chosen_by": chosen,
                  "train_lengths": {**pct, "max": int(lengths.max(initial=0)), "mean": float(lengths.mean())}}
        return enc, report

    def texts(self, frame: pd.DataFrame) -> list[str]:
        return join_texts(frame, self.columns)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
        """Texts → (ids (N, max_length) int64, statistics: tokens, OOV rate, truncated and empty shares)."""
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.full((len(texts), self.max_length), PAD_ID, dtype=np.int64)
        lengths = np.zeros(len(texts), dtype=np.int64)
        unknown = 0
        rows_unknown = 0
        for i, e in enumerate(encodings):
            # a text that spells a special token ("[PAD]") must not make padding inside a text: unknown instead
            row = e.ids
            if PAD_ID in row and self.unk_id is not None:
                row = [self.unk_id if t == PAD_ID else t for t in row]
            lengths[i] = len(row)
            kept = row[:self.max_length]
            ids[i, :len(kept)] = kept
            if self.unk_id is not None:
                n = row.count(self.unk_id)
                unknown += n
                rows_unknown += n > 0
        total = int(lengths.sum())
        stats = {"rows": len(texts), "tokens": total, "mean_length": float(lengths.mean()) if len(texts) else 0.0,
                 "oov_rate": unknown / total if total else 0.0,
                 "rows_with_oov": rows_unknown / len(texts) if len(texts) else 0.0,
                 "truncated": float((lengths > self.max_length).mean()) if len(texts) else 0.0,
                 "empty": float((lengths == 0).mean()) if len(texts) else 0.0}
        return ids, stats

    def transform_new_rows(self, frame: pd.DataFrame, where: str) -> tuple[torch.Tensor, list[str]]:
        """New raw text at predict time → (ids, warnings about unknown tokens and truncation)."""
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise DataError(f"{where} lacks the text column(s) {', '.join(map(repr, absent))} this model reads "
                            f"(its columns: {', '.join(map(repr, map(str, frame.columns)))}). Give a column named "
                            f"{absent[0]!r} with one text per row.")
        ids, stats = self.encode(self.texts(frame))
        notes = []
        if stats["truncated"]:
            notes.append(f"{stats['truncated']:.1%} of the texts are longer than the {self.max_length} tokens the "
                         "model reads; only their first tokens are used, as in training")
        if stats["oov_rate"] > 0.2:
            notes.append(f"{stats['oov_rate']:.1%} of the tokens are not in the training vocabulary (read as "
                         f"{UNK}): text unlike the training texts (another language or domain?)")
        return torch.from_numpy(ids), notes

    # ----------------------------------------------------------------------------------------- persistence

    def to_json(self) -> dict[str, Any]:
        """What preprocess.json keeps (the vocabulary itself is in tokenizer.json)."""
        return {"columns": list(self.columns), "max_length": self.max_length, "tokenizer_file": TOKENIZER_FILE,
                "vocab_size": self.vocab_size, "settings": self.settings}

    def save_tokenizer(self, run_dir: str | Path) -> Path:
        from gradwise.files import atomic_write_text

        path = Path(run_dir) / TOKENIZER_FILE
        atomic_write_text(path, self.tokenizer.to_str(pretty=True) + "\n")
        return path

    @classmethod
    def from_json(cls, blob: Any, preprocess_file: Path) -> TextEncoder:
        """The encoder preprocess.json describes, with tokenizer.json from the same directory (data, never code)."""
        def fail(what: str) -> CheckpointError:
            return CheckpointError(f"preprocessor file '{preprocess_file}' is damaged or was not written by gradwise: "
                                   f"text.{what}. Retrain the run.")

        if not isinstance(blob, dict):
            raise fail("should be an object")
        columns, length = blob.get("columns"), blob.get("max_length")
        if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
            raise fail("columns should be a non-empty list of column names")
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise fail("max_length should be a positive integer")
        settings = blob.get("settings") if isinstance(blob.get("settings"), dict) else {}
        path = preprocess_file.parent / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"run directory '{preprocess_file.parent}' lacks {TOKENIZER_FILE}, the fitted "
                                  "tokenizer of this text run; it cannot encode new text without it. Retrain the run.")
        tok = _load_tokenizer_file(path, "the run's tokenizer")
        enc = cls(tok, columns, length, settings)
        if blob.get("vocab_size") not in (None, enc.vocab_size):
            raise fail(f"vocab_size {blob.get('vocab_size')} does not match {TOKENIZER_FILE} ({enc.vocab_size})")
        return enc

    def describe(self) -> dict[str, Any]:
        return {"columns": self.columns, "max_length": self.max_length, "vocab_size": self.vocab_size,
                "kind": self.settings.get("kind")}


def vocab_size_of(preprocessor: Any) -> int | None:
    """The vocabulary size of a text run's preprocessor (what the embedding tables need), None for other runs."""
    text = getattr(preprocessor, "text", None)
    return None if text is None else text.vocab_size


# --------------------------------------------------------------------------------------------- loading a table


def check_text_columns(frame: pd.DataFrame, text: list[str], features: list[str], where: str) -> None:
    """data.text names existing, non-numeric, non-empty columns, and no other feature column is left unused."""
    twice = sorted({c for c in text if text.count(c) > 1})
    if twice:
        raise DataError(f"data.text names column {twice[0]!r} more than once; list each text column once.")
    missing = [c for c in text if c not in frame.columns]
    if missing:
        raise DataError(f"data.text names column {missing[0]!r}, which is not in '{where}' (its columns: "
                        f"{', '.join(map(repr, map(str, frame.columns)))}). Fix data.text.")
    for c in text:
        values = frame[c]
        if values.notna().sum() == 0 or values.dropna().astype(str).str.strip().eq("").all():
            raise DataError(f"data.text column {c!r} of '{where}' is empty (no cell holds text); name the column "
                            "that holds the text in data.text.")
        if ptypes.is_numeric_dtype(values.dtype) or ptypes.is_bool_dtype(values.dtype):
            raise DataError(f"data.text column {c!r} of '{where}' holds numbers ({values.dtype}), not text; name the "
                            "text column in data.text, and leave numbers out of it.")
    others = [c for c in features if c not in text]
    if others:
        raise DataError(f"'{where}' has feature column(s) {', '.join(map(repr, others))} besides the text column(s) "
                        f"{', '.join(map(repr, text))}; the text models read one token sequence per row, so they "
                        f"would be ignored. Set data.features: {list(text)} to use only the text (or list the "
                        "extra columns in data.text to read them as text too).")


def load_text_table(cfg: DataConfig, src: TableSource, seed: int, fold: int | None, binary: bool) -> DataBundle:
    """`load_data` for a table with data.text: clean, split and subsample as tables are, then tokenize."""
    from gradwise.data import cleaning
    from gradwise.data.prepare import SPLITS, _assemble, clean_rows, split_rows, subsample_train, task_and_targets
    from gradwise.data.preprocess import Preprocessor

    text = list(cfg.text or [])
    notes: list[str] = []
    report: dict[str, Any] = {"dataset": src.name, "kind": "text", "warnings": notes}
    targets = src.targets
    clash = [c for c in text if c in targets]
    if clash:
        raise DataError(f"column {clash[0]!r} is both the target and in data.text; the text to read and the label to "
                        "predict are different columns. Fix data.text or data.target.")
    if cfg.features is not None:
        features = cleaning.check_features(src.frame, cfg.features, targets, src.name)
    else:  # the default (every column but the target) is the text columns here: other columns are said by name
        features = [c for c in src.frame.columns if c not in targets]
    check_text_columns(src.frame, text, features, src.name)
    frames: dict[str, pd.DataFrame] = {"data": src.frame}
    for split in ("val", "test"):
        extra = getattr(src, split)
        if extra is not None:
            extra.columns = [str(c) for c in extra.columns]
            check_text_columns(extra, text, [c for c in features if c in extra.columns], f"the {split} data")
            frames[split] = extra
    frames = {k: f[[*text, *targets]].copy() for k, f in frames.items()}
    report["rows_loaded"] = {k: len(f) for k, f in frames.items()}

    # ---- stateless cleaning, task and targets, split and subsample: the steps of any table (data/prepare.py)
    def without_text(f: pd.DataFrame) -> tuple[pd.DataFrame, int]:  # data.missing=drop: a row without any text
        empty = f[text].isna().all(axis=1)  # (a row with some text keeps the missing cells as empty text)
        return f[~empty], int(empty.sum())

    dropped = clean_rows(cfg, frames, targets, report, drop_missing=without_text)
    report["rows_dropped_without_text"] = dropped["missing"]
    task, codec, ys = task_and_targets(cfg, src, frames, report)
    parts, split_report = split_rows(cfg, src, frames, ys, task, seed, fold, notes, report)
    before = subsample_train(cfg, parts, codec, seed, notes, report)
    train_df, y_train = parts["train"]  # type: ignore[misc]

    # ---- the tokenizer: trained on the training texts only
    encoder, text_report = TextEncoder.fit(join_texts(train_df, text), cfg.tokenizer, text)
    xs: dict[str, np.ndarray | None] = {}
    by_split: dict[str, Any] = {}
    for s in SPLITS:
        p = parts[s]
        if p is None:
            xs[s] = None
            continue
        xs[s], by_split[s] = encoder.encode(encoder.texts(p[0]))
    text_report["by_split"] = by_split
    report["text"] = text_report
    if codec is not None:
        share = np.bincount(y_train, minlength=len(codec)) / max(len(y_train), 1)
        rare = int(np.argmin(share))
        if share[rare] < 0.25:
            common = codec.names[int(np.argmax(share))]
            notes.append(f"class {codec.names[rare]!r} is {share[rare]:.1%} of the training rows: always predicting "
                         f"{common!r} scores {share.max():.1%} accuracy, so judge the model by f1 / balanced_accuracy "
                         f"and the per-class recall of {codec.names[rare]!r} (summary.json per_class).")

    pre = Preprocessor("text", task)
    pre.labels = codec
    pre.target_columns = list(targets)
    pre.sample_shape = (encoder.max_length,)
    pre.text = encoder
    yd = {s: (None if p is None else p[1]) for s, p in parts.items()}
    indices = {s: (None if p is None else p[0].index.to_numpy()) for s, p in parts.items()}
    bundle = _assemble(cfg, seed, src.name, "text", task, pre, xs, yd, indices, report, before,
                       (encoder.max_length,), None, fold, split_report, binary,
                       f"the target column {targets[0]!r} of '{src.name}'")
    # _assemble makes float32 features; token ids go back to int64 (exact: ids < 2**24, the largest vocab_size)
    for s in SPLITS:
        pair = getattr(bundle, s)
        if pair is not None:
            setattr(bundle, s, (pair[0].long(), pair[1]))
    return bundle


def init_embeddings(model: Any, preprocessor: Any, path: str) -> dict[str, Any]:
    """model.embeddings: copy word vectors from a local text file into the model's first embedding table.

    The file has one token per line followed by its numbers (GloVe's .txt, fastText's .vec; a first line of two
    integers, fastText's header, is skipped). Each vocabulary token takes the vector of the same word, or of its
    lowercase form; tokens without one keep their random start. Returns what was found, for data_report.json.
    """
    from torch import nn

    text = getattr(preprocessor, "text", None)
    if text is None:
        raise ConfigError(f"model.embeddings = '{path}' gives word vectors, but this run has no text columns; set "
                          "data.text: [column] or remove model.embeddings.")
    table = next((m for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag)), None)
    if table is None:
        raise ConfigError(f"model.embeddings = '{path}': the model has no embedding table to fill; use embedding_bag, "
                          "gru, lstm or transformer, or a model.factory that starts with nn.Embedding.")
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"model.embeddings = '{p}' is not a file; give a word-vector text file (a token and its "
                        "numbers per line, e.g. GloVe's glove.6B.100d.txt).")
    dim = int(table.weight.shape[1])
    vocab = text.tokenizer.get_vocab(with_added_tokens=False)
    wanted: dict[str, list[int]] = {}
    for token, i in vocab.items():
        if i != PAD_ID and i != text.unk_id:
            wanted.setdefault(token, []).append(i)
    found: dict[int, list[float]] = {}
    with p.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh):
            parts = line.rstrip().split(" ")
            if n == 0 and len(parts) == 2 and all(x.isdigit() for x in parts):
                continue  # fastText's "count dim" header
            if len(parts) < 2:
                continue
            if len(parts) - 1 != dim:
                raise ConfigError(f"model.embeddings = '{p}' holds {len(parts) - 1}-number vectors (line {n + 1}) but "
                                  f"the model's embedding is {dim} wide; set the model's embedding width to "
                                  f"{len(parts) - 1} (model.hidden_size, or model.options.embed_dim for gru/lstm/rnn).")
            word = parts[0]
            for key in (word, word.lower()):
                for i in wanted.get(key, []):
                    if i not in found:
                        try:
                            found[i] = [float(x) for x in parts[1:]]
                        except ValueError:
                            raise DataError(f"model.embeddings = '{p}', line {n + 1}: {word!r} is not followed by "
                                            "numbers; give a word-vector text file.") from None
    if found:
        rows = torch.tensor(list(found), dtype=torch.long)
        with torch.no_grad():
            table.weight[rows] = torch.tensor(list(found.values()), dtype=table.weight.dtype)
    return {"file": str(p), "dim": dim, "vocabulary": len(wanted), "found": len(found),
            "coverage": len(found) / max(len(wanted), 1)}

"""Pre-flight check of a text run (data.text), read from the data report `gradwise.data.text` wrote.

The declared check `text_splits` (doctor/checks/splits.py) calls this: it needs no tensors, only the
out-of-vocabulary (OOV) and truncated shares of each split that tokenizing measured.

What it catches: a tokenizer fitted on other text than the training split. Fitted on the training split, the
training texts have (almost) no unknown tokens and val/test a few percent (words they alone use). A training split
with MORE unknown tokens than val or test means the vocabulary was built from those (a data.tokenizer.file fitted
on the test rows, or on another data set's); val/test with far more unknown tokens than training means text of
another kind (language, domain). Truncation far more common in one split than in training says its texts are longer.
The thresholds (`text_train_oov_excess`, `text_oov_gap`, `text_truncation_gap`) live in doctor/thresholds.py.
"""

from __future__ import annotations

from typing import Any

from gradwise.doctor.findings import Finding
from gradwise.doctor.thresholds import DEFAULT, Thresholds


def text_split_findings(by_split: dict[str, Any] | None, t: Thresholds = DEFAULT) -> list[Finding]:
    """Findings (``train_eval_mismatch``) from a data report's ["text"]["by_split"]; none for other runs."""
    splits = by_split or {}
    train = splits.get("train")
    if not train:
        return []
    out: list[Finding] = []
    for split in ("val", "test"):
        other = splits.get(split)
        if not other:
            continue
        evidence = {"split": split, "train_oov_rate": train["oov_rate"], f"{split}_oov_rate": other["oov_rate"],
                    "train_truncated": train["truncated"], f"{split}_truncated": other["truncated"]}
        if train["oov_rate"] > other["oov_rate"] + t.text_train_oov_excess:
            out.append(Finding(
                "train_eval_mismatch", "warning",
                f"the tokenizer knows the {split} texts better than the training texts: {train['oov_rate']:.1%} of "
                f"the training tokens are out of vocabulary against {other['oov_rate']:.1%} of the {split} tokens; "
                f"its vocabulary was built from other text than the training split",
                {**evidence, "threshold": t.text_train_oov_excess},
                ["data.tokenizer.file fitted on the validation/test rows or on another data set",
                 "a tokenizer fitted on all rows before the split"],
                ["leave data.tokenizer.file out: gradwise fits the tokenizer on the training split",
                 "fit the saved tokenizer on this data set's training split only"], step=0, epoch=0))
        elif other["oov_rate"] > train["oov_rate"] + t.text_oov_gap:
            out.append(Finding(
                "train_eval_mismatch", "warning",
                f"{other['oov_rate']:.1%} of the {split} tokens are out of vocabulary against "
                f"{train['oov_rate']:.1%} of the training tokens: the {split} texts are unlike the training texts",
                {**evidence, "threshold": t.text_oov_gap},
                ["another language, domain or spelling in that split", "splits read from differently cleaned files"],
                ["a subword tokenizer (data.tokenizer.kind=bpe or wordpiece) has fewer unknown tokens",
                 "check that every split comes from the same source"], step=0, epoch=0))
        if other["truncated"] > train["truncated"] + t.text_truncation_gap:
            out.append(Finding(
                "train_eval_mismatch", "info",
                f"{other['truncated']:.0%} of the {split} texts are cut to max_length against "
                f"{train['truncated']:.0%} of the training texts: its texts are longer than training's",
                {**evidence, "threshold": t.text_truncation_gap},
                ["the splits hold different kinds of text"],
                ["data.tokenizer.max_length=<a longer length> or data.tokenizer.length_percentile=99"],
                step=0, epoch=0))
    return out

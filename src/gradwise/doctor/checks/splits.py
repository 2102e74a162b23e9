"""Pre-flight checks of the splits against each other: rows shared between training and validation/test (identical
or near-copies), one column that gives the label away, validation/test features on another scale or in another
column order, a text run's splits tokenized unlike each other."""

from __future__ import annotations

import math
from typing import Any

import torch

from gradwise.doctor.checks.base import register
from gradwise.doctor.checks.preflight import PreflightCheck
from gradwise.doctor.facts import CLASS_LOSSES, classes_of, subsample
from gradwise.doctor.findings import Code, Finding, Fix
from gradwise.doctor.preflight_facts import REGRESSION_LOSSES, PreflightFacts
from gradwise.doctor.text_checks import text_split_findings
from gradwise.doctor.thresholds import Thresholds


def _found(facts: PreflightFacts, code: str) -> bool:
    """An earlier check of this pre-flight raised `code` already."""
    return any(f.code == code for f in facts.found)


@register
class TextSplits(PreflightCheck):
    name = "text_splits"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "splits"
    phase = "data"
    measures = ("a text run's out-of-vocabulary and truncated shares per split: more unknown training tokens than "
                "val/test ones (a tokenizer fitted on other text), far more unknown or cut val/test texts")
    thresholds = ("text_train_oov_excess", "text_oov_gap", "text_truncation_gap")

    def check(self, facts: PreflightFacts, t: Thresholds) -> list[Finding]:
        return text_split_findings(facts.text_by_split, t)


@register
class Leakage(PreflightCheck):
    name = "leakage"
    code = Code.DATA_LEAKAGE
    family = "splits"
    measures = "the share of validation/test rows identical to a training row"
    thresholds = ("leak_warn", "leak_info", "leak_unique")
    causes = ("duplicated rows or oversampling before the split", "the same file used for two splits")
    fixes = ("deduplicate before splitting (e.g. pandas drop_duplicates)",
             "oversample only the training split, after splitting")

    def check(self, facts: PreflightFacts, t: Thresholds) -> list[Finding]:
        x = facts.x
        if not (facts.splits.has("val") or facts.splits.has("test")):
            return []
        rows = x.reshape(len(x), -1)
        if rows.shape[1] * rows.element_size() > 1 << 16 or len(rows) > 500_000:
            return []  # too big to hash cheaply at every fit start
        train_keys = [hash(r.tobytes()) for r in rows.detach().cpu().numpy()]
        train_set = set(train_keys)
        unique_share = len(train_set) / max(len(train_keys), 1)
        found = []
        for split in ("val", "test"):
            o = facts.splits.get(split, max_rows=100_000) if facts.splits.has(split) else None
            if o is None or o[0].shape[1:] != x.shape[1:]:
                continue
            other = o[0].reshape(len(o[0]), -1).detach().cpu().numpy()
            same = sum(hash(r.tobytes()) in train_set for r in other)
            share = same / max(len(other), 1)
            if share < t.leak_info or same < 2:
                continue
            # few discrete features: identical rows are expected when most training rows repeat anyway
            discrete = unique_share < t.leak_unique
            found.append(self.finding(
                f"{same} of {len(other)} {split} rows ({share:.1%}) are identical to training rows; {split} scores "
                "overstate how the model does on new data",
                {"split": split, "identical_rows": same, "rows": len(other), "share": share,
                 "threshold": t.leak_warn, "train_unique_share": unique_share}, epoch=0, step=0,
                severity="warning" if share >= t.leak_warn and not discrete else "info"))
        return found


@register
class NearCopies(PreflightCheck):
    name = "near_copies"
    code = Code.DATA_LEAKAGE
    family = "splits"
    measures = ("validation rows whose nearest training row is far closer than their other neighbours, more than the "
                "data's own intrinsic dimension makes likely (augmented copies)")
    thresholds = ("near_copy_p", "near_copy_share", "near_copy_budget")
    causes = ("augmentation (jitter, crops, noise) applied before the split, so copies of one example land in both",
              "overlapping windows of one series split at random", "the same source recorded twice")
    fixes = ("split first, then augment the training split only", "split by source/group (sklearn "
             "GroupShuffleSplit) or by time, not by row")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        """A row's nearest training row far closer than its other neighbours, measured against what the data's own
        dimension allows. Without copies, training rows around a validation row are locally a uniform sample of
        the data's intrinsic dimension m, so (nearest / 10th nearest)^m is the smallest of 9 uniforms and
        P(ratio <= r) = 1 - (1 - r^m)^9. m is estimated from the 11th-20th neighbours (Levina & Bickel 2004),
        beyond a handful of copies. A row is a near-copy when that probability is below near_copy_p. Identical rows
        are leakage's; only splits small enough to compare against every training row are checked."""
        x = facts.x
        if not facts.splits.has("val") or not x.is_floating_point() or len(x) < _SHELL or \
                _found(facts, "data_leakage"):
            return None
        other = facts.splits.get("val")
        if other is None or other[0].shape[1:] != x.shape[1:] or not other[0].is_floating_point():
            return None
        tr = x.reshape(len(x), -1).float()
        if tr.shape[1] < 4:
            return None
        v = other[0][subsample(len(other[0]), 128).to(other[0].device)].to(tr.device).float().reshape(-1, tr.shape[1])
        if len(v) < 20 or len(v) * len(tr) * tr.shape[1] > t.near_copy_budget:
            return None
        d = torch.cdist(v, tr).topk(_SHELL, largest=False).values.double()
        d = d[d[:, 0] > 0]  # rows with an identical twin are leakage's business
        if len(d) < 20:
            return None
        dim = _intrinsic_dimension(d)
        if dim is None:
            return None
        ratio = d[:, 0] / d[:, 9]
        chance = 1 - (1 - ratio ** dim) ** 9  # how often a row without a copy is this close to one neighbour
        share = float((chance < t.near_copy_p).float().mean())
        if share < t.near_copy_share:
            return None
        return self.finding(
            f"{share:.0%} of the validation rows have a near-copy among the training rows (median distance to the "
            f"nearest training row {float(ratio.median()):.2g} of that to the 10th nearest; with the data's "
            f"dimension ~{dim:.0f}, rows without a copy get that close < {t.near_copy_p:.0%} of the time): the "
            "validation score measures recall of rows the model trained on, not new data",
            {"split": "val", "share_near_copies": share, "median_nearest_to_10th": float(ratio.median()),
             "intrinsic_dimension": dim, "rows_checked": len(d), "threshold": t.near_copy_p,
             "threshold_share": t.near_copy_share}, epoch=0, step=0)


_SHELL = 20  # neighbours looked at: the 10th for the ratio, the 11th-20th for the dimension


def _intrinsic_dimension(d: torch.Tensor) -> float | None:
    """The data's intrinsic dimension from each row's 11th..20th nearest distances (sorted, (rows, 20)): for a
    locally uniform sample E[log(T_20 / T_j)] = (H_19 - H_(j-1)) / m (Levina & Bickel 2004, the estimator's
    outer shell only, so up to ~9 copies of a row do not bias it); the median over rows. None when ties make
    the shell flat (discrete data: no dimension to speak of)."""
    shell = d[:, 10:]
    ok = shell[:, 0] > 0
    if int(ok.sum()) < 10:
        return None
    harmonic = torch.cumsum(1 / torch.arange(1, _SHELL, dtype=torch.float64), 0)  # H_1 .. H_19
    expected = float((harmonic[-1] - harmonic[9:_SHELL - 2]).sum())  # sum over j = 11..19 of H_19 - H_(j-1)
    logs = torch.log(shell[ok, -1:] / shell[ok, :-1]).sum(1)
    median = float(logs.median())
    return expected / median if median > 0 else None


@register
class LabelColumn(PreflightCheck):
    name = "label_column"
    code = Code.DATA_LEAKAGE
    family = "splits"
    measures = "one input column that alone predicts the label (recorded after the outcome)"
    thresholds = ("label_column_acc", "label_column_gap", "label_column_r", "label_column_z", "label_column_beat")
    causes = ("a field filled in after the outcome (a refund, a diagnosis, a status) kept among the inputs",
              "the target (or a transform of it) joined back into the features")

    def check(self, facts: PreflightFacts, t: Thresholds) -> Finding | None:
        """Judged on validation rows against class medians (or correlations) taken from the training rows, so a
        column must carry the label in both splits; tables of 3 to 1024 columns only (wider inputs are pixels or
        embeddings, not fields a table may have picked up)."""
        x = facts.x
        if x.ndim != 2 or not 3 <= x.shape[1] <= 1024 or not x.is_floating_point() or len(x) < 50 or \
                _found(facts, "data_leakage") or not facts.splits.has("val"):
            return None
        classes = facts.loss_kind in (*CLASS_LOSSES, "bce", "bce_prob")  # class indices, or one 0/1 column
        # An accuracy of label_column_acc (99%) cannot be told apart from a lower one in fewer than 1/(1 - acc)
        # validation rows (one error is already more than 1%); a correlation carries its own standard error
        # (Fisher z), so a regression column needs only enough rows for that (_regression_column).
        min_rows = math.ceil(1 / max(1 - t.label_column_acc, 1e-3)) if classes else 10
        rows = _column_rows(x, facts.y, facts.splits.get("val"), min_rows)
        if rows is None:
            return None
        if classes:
            judged = _class_column(rows, t)
        elif facts.loss_kind in REGRESSION_LOSSES and rows[1].is_floating_point() and rows[1].ndim == 1 \
                and rows[3].ndim == 1:
            judged = _regression_column(rows, t)
        else:
            return None
        if judged is None:
            return None
        what, second, col, evidence = judged
        # A regression column this close to the target can be legitimate (the previous value of a smooth series in
        # one-step forecasting): said as info there; a column that gives away the class is a warning.
        return self.finding(
            f"{what}; the next best column reaches {second:.2g}. A column that holds the answer is usually recorded "
            "after the outcome: the model leans on it, and the validation score says nothing about data where it is "
            "not known yet", evidence, epoch=0, step=0,
            severity="info" if "abs_correlation" in evidence else "warning",
            fixes=[f"drop column {col} from the inputs if it is not known when the model must predict",
                   "if it is legitimately known (a lag of the target in forecasting), nothing is wrong; the task may "
                   "not need a network"])


_Rows = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _column_rows(x: torch.Tensor, y: torch.Tensor, val: tuple[torch.Tensor, torch.Tensor] | None,
                 min_rows: int) -> _Rows | None:
    """(training x, y, validation x, y, picked training rows, picked validation rows) for the label-column check:
    up to 5000 / 1000 rows (class medians and correlations settle long before), all finite."""
    if val is None or val[0].ndim != 2 or val[0].shape[1] != x.shape[1] or len(val[0]) < min_rows:
        return None
    ti = subsample(len(x), 5000).to(x.device)
    vi = subsample(len(val[0]), 1000).to(val[0].device)
    xt, yt = x[ti].float().cpu(), y[ti].cpu()
    xv, yv = val[0][vi].float().cpu(), val[1][vi].cpu()
    if not (bool(torch.isfinite(xt).all()) and bool(torch.isfinite(xv).all())):
        return None
    # Random rows for the neighbour comparison, not the first ones: subsample keeps the stored order, and rows
    # sorted by label would leave the neighbours one class to choose from.
    gen = torch.Generator().manual_seed(11)
    return xt, yt, xv, yv, torch.randperm(len(xt), generator=gen)[:5000], torch.randperm(len(xv), generator=gen)[:500]


def _nearest_without(rows: _Rows, col: int) -> torch.Tensor:
    """What the other columns tell: each picked validation row's nearest picked training row, `col` left out
    (standardized columns). A legitimately decisive column (well-separated clusters) is matched by the other
    columns; a leaked one beats them, because it also "predicts" the label noise no feature can."""
    xt, _, xv, _, pick_t, pick_v = rows
    keep = torch.arange(xt.shape[1]) != col
    a, b = xt[pick_t][:, keep], xv[pick_v][:, keep]
    mu, sd = a.mean(0), a.std(0).clamp_min(1e-8)
    return torch.cdist((b - mu) / sd, (a - mu) / sd).argmin(dim=1)


def _class_column(rows: _Rows, t: Thresholds) -> tuple[str, float, int, dict[str, Any]] | None:
    """A column whose nearest class median (per validation row) is right far more often than any other column's
    and than the nearest training row by the other columns."""
    xt, yt, xv, yv, pick_t, pick_v = rows
    ct, cv = classes_of(yt), classes_of(yv)
    if ct is None or cv is None:
        return None
    labels = torch.unique(ct)
    if len(labels) < 2 or len(labels) > 100:
        return None
    med = torch.stack([xt[ct == c].median(dim=0).values for c in labels])  # (classes, columns)
    # nearest class median per (row, column), one class at a time: no (classes, rows, columns) tensor
    best_d = torch.full_like(xv, math.inf)
    guess = torch.zeros(xv.shape, dtype=labels.dtype)
    for c, m in zip(labels, med, strict=True):
        d = (xv - m).abs_()
        closer = d < best_d
        best_d = torch.where(closer, d, best_d)
        guess[closer] = c
    acc = (guess == cv[:, None]).float().mean(dim=0)
    majority = float(torch.bincount(cv - int(cv.min())).max()) / len(cv)
    order = acc.argsort(descending=True)
    best, col, second = float(acc[order[0]]), int(order[0]), float(acc[order[1]])
    bar = max(t.label_column_acc, majority + t.label_column_gap * (1 - majority))
    if best < bar or second >= bar:  # one column holds the answer, not several that separate the classes
        return None
    nn_acc = float((ct[pick_t][_nearest_without(rows, col)] == cv[pick_v]).float().mean())
    if best < nn_acc + t.label_column_beat:
        return None
    what = (f"column {col} alone predicts the class of {best:.1%} of the validation rows, where a row's nearest "
            f"training row by the other columns gets {nn_acc:.1%}")
    return what, second, col, {"column": col, "single_column_accuracy": best, "next_best_column_accuracy": second,
                               "nearest_row_accuracy": nn_acc, "majority_share": majority,
                               "threshold": t.label_column_acc}


def _abs_corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|correlation| of each column of `a` with `b` (0 for a constant column)."""
    return torch.corrcoef(torch.cat([a.T, b.float()[None]]))[-1, :-1].nan_to_num(0.0).abs()


def _regression_column(rows: _Rows, t: Thresholds) -> tuple[str, float, int, dict[str, Any]] | None:
    """A column that correlates with the target almost perfectly in both splits, far better than any other column
    and than the nearest training row's target by the other columns."""
    xt, yt, xv, yv, pick_t, pick_v = rows
    r = torch.minimum(_abs_corr(xt, yt), _abs_corr(xv, yv))
    order = r.argsort(descending=True)
    best, col, second = float(r[order[0]]), int(order[0]), float(r[order[1]])
    if best < t.label_column_r or second >= t.label_column_r:
        return None
    # the column must clear label_column_r by label_column_z standard errors of Fisher's z in both splits, so a
    # small split's lucky correlation does not count (88 validation rows: se 0.11, r 0.9998 clears 0.995 by 15)
    for n, a, b in ((len(xt), xt[:, col], yt), (len(xv), xv[:, col], yv)):
        rz = math.atanh(min(float(_abs_corr(a[:, None], b)[0]), 1 - 1e-12))
        if rz - t.label_column_z / math.sqrt(n - 3) < math.atanh(t.label_column_r):
            return None
    nn_r = float(_abs_corr(yt[pick_t][_nearest_without(rows, col)].float()[:, None], yv[pick_v])[0])
    if best < nn_r + t.label_column_beat:
        return None
    what = (f"column {col} alone correlates {best:.4f} with the target (training and validation rows), the target "
            f"of a row's nearest training row by the other columns {nn_r:.2f}")
    return what, second, col, {"column": col, "abs_correlation": best, "next_best_column": second,
                               "nearest_row_correlation": nn_r, "threshold": t.label_column_r}


@register
class SplitScale(PreflightCheck):
    name = "split_scale"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "splits"
    measures = ("validation/test features shifted or spread far from the training features, beyond their standard "
                "errors (preprocessed apart)")
    thresholds = ("split_shift", "split_scale", "split_share", "split_z")
    causes = ("preprocessing (standardization, scaling) applied to the training split only",
              "splits read from differently processed files")
    fixes = ("apply the same preprocessing to every split: fit the scaler on train, then transform train, val and "
             "test with it", Fix("data.scale", "standard", note="does that for every split"))

    def check(self, facts: PreflightFacts, t: Thresholds) -> list[Finding]:
        """Random splits of one data set never put most features several training standard deviations away, or
        spread them several times wider or narrower; preprocessing applied to one split only does. A column counts
        as off only when its shift (or spread) is also split_z standard errors away from the training column's, so
        the rows needed depend on how large the difference is: raw units against standardized ones show in a few
        rows, a shift near the effect bar needs many."""
        x = facts.x
        if not x.is_floating_point() or len(x) < _MIN_ROWS:
            return []
        tr = x[subsample(len(x), 5000).to(x.device)].float()
        tr = tr.reshape(len(tr), -1)
        mean, std = tr.mean(0), tr.std(0)
        # only columns that vary in training and take more than two values: a one-hot or binary column's spread
        # in a small split depends on which rare levels it happens to hold
        lo, hi = tr.amin(0), tr.amax(0)
        varies = (std > 0) & ~((tr == lo) | (tr == hi)).all(0)
        if int(varies.sum()) == 0:
            return []
        kurt = (((tr - mean) / std.clamp_min(1e-30)) ** 4).mean(0)  # 3 for a normal column, more for heavy tails
        found = []
        for split in ("val", "test"):
            other = facts.splits.get(split) if facts.splits.has(split) else None
            if other is None or other[0].shape[1:] != x.shape[1:] or len(other[0]) < _MIN_ROWS:
                continue
            o = other[0][subsample(len(other[0]), 5000).to(other[0].device)].to(tr.device).float()
            o = o.reshape(len(o), -1)
            z, ratio, vstd, sure_shift, sure_spread = _split_shift(tr, o, mean, std, kurt, varies)
            off = ((z > t.split_shift) & (sure_shift >= t.split_z)) | \
                (((ratio > t.split_scale) | ((ratio < 1 / t.split_scale) & (vstd > 0))) & (sure_spread >= t.split_z))
            share = float(off.float().mean())
            # most columns off, and the typical column too (not a few heavy tails in a small split)
            typical = float(z.median()) > t.split_shift or not 1 / t.split_scale < float(ratio.median()) < t.split_scale
            if share > t.split_share and typical:
                found.append(self._finding(split, share, z, ratio, int(varies.sum()), t))
        return found

    def _finding(self, split: str, share: float, z: torch.Tensor, ratio: torch.Tensor, features: int,
                 t: Thresholds) -> Finding:
        return self.finding(
            f"the {split} inputs are on another scale than the training inputs: {share:.0%} of the features are "
            f"shifted by more than {t.split_shift:g} training standard deviations or spread {t.split_scale:g}x wider "
            f"or narrower (median shift {float(z.median()):.3g} sd, median spread ratio {float(ratio.median()):.3g}); "
            f"scores on {split} say little about the trained model",
            {"split": split, "share_off": share, "median_shift_sd": float(z.median()),
             "median_std_ratio": float(ratio.median()), "features": features, "threshold_shift": t.split_shift,
             "threshold_scale": t.split_scale, "threshold_share": t.split_share}, epoch=0, step=0)


_MIN_ROWS = 3  # a spread (and its standard error) needs at least 3 rows; the z-tests decide the rest


def _split_shift(tr: torch.Tensor, o: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, kurt: torch.Tensor,
                 varies: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per varying column: the shift of the other split's mean in training standard deviations, the spread ratio
    (its std / the training std), the other split's std, and how many standard errors each of the two differences
    is. The mean's standard error is sqrt(s_o²/n_o + s_t²/n_t) (Welch); the log spread ratio's is
    sqrt((kurtosis - 1)/4 · (1/(n_o - 1) + 1/(n_t - 1))) (delta method for a sample variance, kurtosis from the
    training column, so heavy-tailed columns need a larger difference)."""
    n_t, n_o = len(tr), len(o)
    o_mean, o_std = o.mean(0)[varies], o.std(0)[varies]
    t_mean, t_std, k = mean[varies], std[varies], kurt[varies]
    diff = (o_mean - t_mean).abs()
    z = diff / t_std
    sure_shift = diff / (o_std ** 2 / n_o + t_std ** 2 / n_t).sqrt().clamp_min(1e-30)
    ratio = o_std / t_std
    se_log = ((k - 1).clamp_min(0.5) / 4 * (1 / (n_o - 1) + 1 / (n_t - 1))).sqrt()
    sure_spread = ratio.clamp_min(1e-30).log().abs() / se_log
    return z, ratio, o_std, sure_shift, sure_spread


def _correlations(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The column correlation matrix and which columns vary (a constant column has no correlation)."""
    a = a.double()
    return torch.corrcoef(a.T), a.std(0) > 1e-12 * (1 + a.abs().amax(0))


@register
class SplitStructure(PreflightCheck):
    name = "split_structure"
    code = Code.TRAIN_EVAL_MISMATCH
    family = "splits"
    measures = "column-pair correlations that differ between the splits far beyond sampling noise (columns reordered)"
    thresholds = ("structure_z", "structure_share", "structure_min_rows")
    causes = ("the columns of one split in another order (a table built by position, not by column name)",
              "a transform or feature step applied to one split only", "splits read from different sources")
    fixes = ("build every split with the same pipeline and select columns by name (pandas: df[train_columns])",)

    def check(self, facts: PreflightFacts, t: Thresholds) -> list[Finding]:
        """Per-column scales can match (each split standardized on its own) and still the model reads feature j
        where it learned feature i. Tables of 3-512 columns; splits of structure_min_rows rows or more."""
        x = facts.x
        if x.ndim != 2 or not 3 <= x.shape[1] <= 512 or not x.is_floating_point() \
                or len(x) < t.structure_min_rows or _found(facts, "train_eval_mismatch"):
            return []
        tr = x[subsample(len(x), 20000).to(x.device)].cpu()
        if not bool(torch.isfinite(tr).all()):
            return []
        ct, live_t = _correlations(tr)
        found = []
        for split in ("val", "test"):
            other = facts.splits.get(split) if facts.splits.has(split) else None
            if other is None or other[0].shape[1:] != x.shape[1:] or len(other[0]) < t.structure_min_rows:
                continue
            o = other[0][subsample(len(other[0]), 20000).to(other[0].device)].cpu()
            if not bool(torch.isfinite(o).all()):
                continue
            co, live_o = _correlations(o)
            live = live_t & live_o
            pairs = torch.triu(live[:, None] & live[None, :], diagonal=1)
            if int(pairs.sum()) < 3:
                continue
            zt = torch.atanh(ct.clamp(-0.999999, 0.999999))
            zo = torch.atanh(co.clamp(-0.999999, 0.999999))
            se = (1 / (len(tr) - 3) + 1 / (len(o) - 3)) ** 0.5
            dz = ((zo - zt).abs() / se)[pairs]
            moved = dz >= t.structure_z
            share = float(moved.float().mean())
            if share >= t.structure_share and int(moved.sum()) >= 3:
                ii, jj = torch.nonzero(pairs, as_tuple=True)
                k = int(dz.argmax())
                found.append(self._finding(split, int(moved.sum()), len(dz), share, (int(ii[k]), int(jj[k])),
                                           float(ct[ii[k], jj[k]]), float(co[ii[k], jj[k]]), t))
        return found

    def _finding(self, split: str, moved: int, pairs: int, share: float, cols: tuple[int, int], before: float,
                 after: float, t: Thresholds) -> Finding:
        i, j = cols
        return self.finding(
            f"the {split} columns relate to each other differently than the training columns: {moved} of {pairs} "
            f"column pairs ({share:.0%}) changed their correlation far beyond sampling noise (columns {i} and {j}: "
            f"{before:.2f} in training, {after:.2f} in {split}); the model reads the {split} columns as features "
            "they are not",
            {"split": split, "pairs_moved": moved, "pairs": pairs, "share": share, "example_columns": [i, j],
             "train_correlation": before, f"{split}_correlation": after, "threshold_z": t.structure_z,
             "threshold_share": t.structure_share}, epoch=0, step=0)

"""The verdict over a run's findings: a root cause hides or explains the symptoms it causes.

Inside one pass of the curve checks a symptom is dropped (`supersede`: a diverged run also 'plateaus' and
'underfits'); across the check types (pre-flight, probes, curves, end of training) the doctor keeps it, downgraded
to info, marked "explained by" its root and given the root's fixes (`explained`): the symptom's own advice can
contradict the root's (no_learning says "raise the LR", lr_too_high "lower it").
"""

from __future__ import annotations

from gradwise.doctor.findings import Finding

# A root cause hides the symptoms it explains (a diverged run also 'plateaus', 'underfits' and has a 'gap').
# Inside one curve_findings call a symptom is dropped (`supersede`); across the check types (pre-flight, probes,
# curves, end of training) the doctor keeps it, downgraded to info and marked with its root (`explained`).
SUPERSEDES: dict[str, tuple[str, ...]] = {
    "diverging_loss": ("plateau", "underfitting", "overfitting", "oscillating_loss", "train_eval_mismatch",
                       "no_learning"),
    "no_learning": ("plateau", "underfitting"),
    # steps too large for the weights, and the units they killed, stall a run: raising its LR (no_learning's and
    # plateau's advice) would make it worse
    "lr_too_high": ("no_learning", "plateau"),
    "dead_units": ("no_learning", "plateau"),
    # shuffled labels: the training loss creeps down slowly and stalls high ('underfitting', 'plateau', early on
    # 'no_learning'); none of those fixes (a bigger model, more epochs, a higher LR) helps
    "label_problem": ("overfitting", "plateau", "underfitting", "no_learning"),
    "train_eval_mismatch": ("overfitting", "label_problem"),  # a broken eval mode inflates the val loss
    # a loss that does not match the output (softmax before cross-entropy, sigmoid before BCE-with-logits, a
    # squashing output on a regression target) floors or flattens the loss: the stall and the high loss are its doing
    "loss_output_mismatch": ("underfitting", "plateau", "no_learning"),
    # a too-small init makes the data gradient vanish, so any regularization looks dominant on the first steps
    # (vanishing_gradients is no such root: a decay that shrinks the weights makes the gradients vanish itself);
    # a too-large one makes the network a rough random function that memorizes its training rows and carries
    # little over to new ones -- what overfitting and label_problem measure, with the init, not the data or the
    # labels, to fix (only a too-large init: see `_covers`)
    "bad_initialization": ("over_regularization", "overfitting", "label_problem"),
    # raw inputs make the first layers' gradients large relative to their weights from step 0 on; only gradients
    # that are large but not growing are explained by that (see `_covers`)
    "unnormalized_inputs": ("exploding_gradients",),
    # gradients that vanish on the way back leave the early layers' steps tiny, so the median step looks like a
    # too-low LR; raising it (lr_too_low's fix) would overshoot the late layers and leave the early ones stuck
    "vanishing_gradients": ("lr_too_low",),
}


def _covers(root: Finding, symptom: Finding) -> bool:
    if symptom.code not in SUPERSEDES.get(root.code, ()):
        return False
    if root.evidence.get("repaired") and (symptom.step or 0) > (root.step or 0):
        return False  # a root the doctor repaired explains nothing that came after the repair
    if root.code == "diverging_loss" and symptom.code == "oscillating_loss":  # up and back down, again and again
        return not root.evidence.get("recovered", False)
    if root.code == "bad_initialization" and symptom.code in ("overfitting", "label_problem"):
        return _init_too_large(root)
    if symptom.code == "exploding_gradients":  # growth or non-finite values are a blow-up of their own
        return not symptom.evidence.get("growing", True)
    return True


def _init_too_large(root: Finding) -> bool:
    """The init check found weights above init_gain_high or an initial loss far above an all-zero output's
    (init_loss_ratio): the outputs start as large random values."""
    ev = root.evidence
    ratio, limit = ev.get("ratio"), ev.get("threshold")
    loud = ratio is not None and limit is not None and ratio >= limit
    # a constant layer (distinct_rows 1) is the symmetric-init fault, not a large one
    return loud or any("distinct_rows" not in layer for layer in ev.get("layers", ()))


def supersede(found: list[Finding]) -> list[Finding]:
    roots = [f for f in found if f.code in SUPERSEDES]
    return [f for f in found if not any(r.code != f.code and _covers(r, f) for r in roots)]


def explained(found: list[Finding]) -> list[Finding]:
    """The findings of a whole run with every symptom of a root cause found elsewhere (a warning or error of
    another check type) turned into info, marked with the root in its evidence. Pre-flight findings (epoch 0)
    describe the setup itself and are never a symptom; the first matching root in SUPERSEDES order is named."""
    rank = {code: i for i, code in enumerate(SUPERSEDES)}
    roots = sorted((f for f in found if f.rank >= 1 and f.code in rank), key=lambda f: rank[f.code])
    # a root that is itself a symptom of another (overfitting under label_problem under a too-large init) yields
    # to the deeper one, so the fix named is the cause's; it still explains what only it covers
    deeper = [r for r in roots if r.epoch != 0 and any(o.code != r.code and _covers(o, r) for o in roots)]
    roots = [r for r in roots if r not in deeper] + deeper
    out: list[Finding] = []
    for f in found:
        root = next((r for r in roots if r.code != f.code and _covers(r, f)), None) \
            if f.rank >= 1 and f.epoch != 0 else None
        if root is None:
            out.append(f)
            continue
        # the symptom's own advice can contradict the root's (no_learning says "raise the LR", lr_too_high "lower
        # it"): what to change is the root's fix
        out.append(Finding(f.code, "info", f"{f.message} (explained by {root.code})",
                           {**f.evidence, "explained_by": root.code}, list(f.causes), list(root.fixes),
                           step=f.step, epoch=f.epoch))
    return out

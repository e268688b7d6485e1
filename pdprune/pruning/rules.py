"""Training rules: what a method does to training besides masking, at the loop's step hooks.

A rule is called before every optimizer step (`before_step`: the forward has not run yet) and
after every backward (`after_backward`: gradients of this step are in `.grad`, before clipping
and the optimizer step), with the pruner it belongs to, so it can read and set its structure's
masks and the optimizer's state. Examples: dropping and regrowing weights (SET, RigL, GraNet),
the gradient of a penalty (soft movement's L1 on sigmoid(S); Early-Bird's L1 on BN scales),
freezing learned thresholds once a target is reached (STR). Whatever it keeps between steps
goes into its state_dict, so a resumed run continues bit-equal.
"""

from __future__ import annotations


class TrainingRule:
    """The no-op rule: every hook does nothing, nothing to save."""

    def before_step(self, pruner, step: int) -> None:
        pass

    def after_backward(self, pruner, step: int) -> None:
        pass

    def before_finalize(self, pruner) -> None:
        """Before the masks are hardened at the end (masks kept current from parameters that
        changed since the last step's hook are recomputed here)."""

    def summary(self) -> dict:
        """Its own sections of summary.json (STR: where its thresholds froze)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

"""The study's optimization history and parameter importances as PNGs in the sweep folder."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """optimization_history.png, and param_importances.png when importances can be computed
    (two complete trials at least); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window (sweeps run headless)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        log.info("No complete trial: no plots of the study")
        return []
    plots = {"optimization_history.png": vis.plot_optimization_history}
    if len(complete) >= 2:
        plots["param_importances.png"] = plot_importances
    else:
        log.info("param_importances.png: not written (%d complete trial(s), needs 2)",
                 len(complete))
    written = []
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                ax = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError) as exc:
                log.info("%s: not written (%s)", name, exc)
                continue
        ax.figure.savefig(folder / name, dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
        written.append(folder / name)
    return written


def plot_importances(study: optuna.Study):
    """Each parameter's share of the variation in the objective, as horizontal bars. Mean
    decrease in impurity (a random forest's), drawn here: optuna 2.x's default evaluator
    (fANOVA) and its matplotlib plot both fail on current scikit-learn and matplotlib."""
    import matplotlib.pyplot as plt

    evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    names = list(importances)[::-1]  # the most important on top
    fig, ax = plt.subplots(figsize=(6, 1 + 0.4 * len(names)))
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance for the objective (mean decrease in impurity)")
    ax.set_title(f"Parameter importances: {study.study_name}")
    return ax

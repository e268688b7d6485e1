"""A stored Optuna study as a sweep continues it: which trials are done, and closing the ones a
killed sweep left running."""

from __future__ import annotations

import logging

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)

DONE = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
INTERRUPTED = "interrupted"  # user attr of a trial whose sweep was killed before it ended


def load(name: str | None, storage: str | None) -> optuna.Study | None:
    """The stored study, or None when there is none yet (or no storage to keep one in)."""
    if not (name and storage):
        return None
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:  # optuna 2.x: no such study in this storage
        return None


def close_interrupted(study: optuna.Study) -> list[int]:
    """Mark the trials still RUNNING (their sweep was killed) failed and interrupted, so they
    count as neither done nor best; returns their numbers. Only one sweep may use a study at a
    time: a second one running now would have its trials closed under it."""
    closed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # a running trial takes attributes through a Trial, made from its storage id (optuna 2
        # keeps it only as FrozenTrial._trial_id)
        optuna.trial.Trial(study, trial._trial_id).set_user_attr(INTERRUPTED, True)
        study.tell(trial.number, state=TrialState.FAIL)
        closed.append(trial.number)
    return closed


def done(study: optuna.Study) -> int:
    """Trials that ran to an end (complete, failed or pruned), not those a kill interrupted."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=DONE)
               if not t.user_attrs.get(INTERRUPTED))


def completed(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

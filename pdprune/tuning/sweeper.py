"""Hydra's Optuna sweeper, made to continue a stored study: a second command with the same study
and storage runs only the trials still missing to n_trials (Hydra's own runs n_trials more each
time), numbers their job folders after the existing ones (its own starts at 0 again and would
write over trial 0's folder), and plots the study into the sweep folder at the end.

The plugin class Hydra instantiates is hydra_plugins.pdprune_tuning (Hydra takes sweepers only
from the hydra_plugins package); this is its implementation."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

from .plots import write_plots
from .study import close_interrupted, completed, done, load

log = logging.getLogger(__name__)


class ResumableOptunaSweeperImpl(OptunaSweeperImpl):
    def sweep(self, arguments: list[str]) -> None:
        folder = Path(self.config.hydra.sweep.dir)
        folder.mkdir(parents=True, exist_ok=True)  # the default storage is a file in it
        wanted = self.n_trials
        study = load(self.study_name, self.storage)
        if study is not None:
            closed = close_interrupted(study)
            if closed:
                log.info("Trials %s were interrupted: marked failed, new trials replace them",
                         closed)
            finished = done(study)
            self.n_trials = max(0, wanted - finished)
            self.job_idx = len(study.trials)  # job folder N is trial N
            self._reseed(len(study.trials))
            log.info("Study %s has %d finished trial(s) of %d: running %d", self.study_name,
                     finished, wanted, self.n_trials)
        try:
            super().sweep(arguments)
        except ValueError:  # the parent's study.best_trial, when no trial has completed
            study = load(self.study_name, self.storage)
            if study is None or completed(study):
                raise
            log.error("No trial completed: no optimization_results.yaml")
        study = load(self.study_name, self.storage)
        if study is None:
            log.info("No storage (hydra.sweeper.storage): no plots of the study")
            return
        for path in write_plots(study, folder):
            log.info("Wrote %s", path)

    def _reseed(self, offset: int) -> None:
        """A seeded sampler made again would draw trial 0's values again: seed it by how many
        trials the study has, so a continued study draws new values (and the same commands
        give the same trials)."""
        config = self.config.hydra.sweeper.sampler
        if offset and config.get("seed") is not None:
            self.sampler = instantiate(config, seed=config.seed + offset)

"""pdprune's Optuna sweeper as a Hydra plugin (hydra.sweeper._target_ in
pdprune/configs/hparams_search/): Hydra instantiates sweepers only from this package. Nothing
heavy is imported here, since Hydra imports every plugin module at start-up."""

from __future__ import annotations

from typing import Any

try:
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # no [tuning] extra: no sweeper here (pre-flight says what to install)
    OptunaSweeper = None  # and Hydra's scan of its plugins at start-up stays silent

if OptunaSweeper is not None:
    class ResumableOptunaSweeper(OptunaSweeper):
        """OptunaSweeper, with the implementation that continues a stored study."""

        def __init__(self, **kwargs: Any) -> None:
            from pdprune.tuning.sweeper import ResumableOptunaSweeperImpl

            self.sweeper = ResumableOptunaSweeperImpl(**kwargs)

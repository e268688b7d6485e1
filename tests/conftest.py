from __future__ import annotations

import signal

import pytest
from hydra import compose, initialize_config_dir

from pdprune.config import CONFIG_DIR


def pytest_configure(config):
    """A suite started in the background (`cmd &` without job control) inherits SIGINT
    ignored, and pdprune rightly leaves an ignored SIGINT alone; the Ctrl-C tests need it as a
    terminal delivers it, in this process and in the runs it starts."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def make_cfg():
    """Compose pdprune/configs/train.yaml with overrides, exactly as prune-train does."""

    def _make(*overrides: str):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=list(overrides))

    return _make


# A few seconds on a CPU: synthetic 8x8 images, small MLP, no progress bars.
TINY = ("dataset=synthetic", "model.hidden=[32]", "trainer.epochs=4", "trainer.progress=false")

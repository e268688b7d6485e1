"""TensorBoard event files in <run>/tensorboard (`tensorboard --logdir runs/`). Every scalar
is stepped by optimizer steps (epoch metrics at their epoch's last step, with `epoch` itself
as a scalar), so a resumed run purges what its interrupted run wrote after the checkpoint."""

from __future__ import annotations

from pathlib import Path

from .base import RunLogger, require
from .context import RunContext


class TensorBoardLogger(RunLogger):
    def __init__(self, log_dir: str = "tensorboard", images: bool = True):
        require("tensorboard", "tensorboard", "tensorboard")
        self.log_dir, self.images = log_dir, images
        self.writer = None
        self.last_step = 0

    def start(self, context: RunContext, previous: dict) -> dict:
        from torch.utils.tensorboard import SummaryWriter
        # steps after the checkpoint were logged by the run that was interrupted: hide them
        purge = context.start_step + 1 if context.resumed else None
        self.writer = SummaryWriter(str(context.run_dir / self.log_dir), purge_step=purge)
        self.writer.add_text("config", "\n".join(f"    {k}: {v}"
                                                 for k, v in context.params().items()))
        return {}

    def log_step(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_epoch(self, epoch: int, step: int, values: dict[str, float]) -> None:
        self.last_step = step
        self.writer.add_scalar("epoch", epoch, step)
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_summary(self, summary: dict, metrics: dict[str, float], files: list[Path],
                    images: list[Path]) -> None:
        step = self.last_step
        for key, value in metrics.items():
            self.writer.add_scalar(f"summary/{key}", value, step)
        for path in images:
            self.writer.add_image(f"plots/{path.stem}", _read_png(path), step, dataformats="HWC")

    def finish(self, status: str, error: str | None) -> None:
        if self.writer is not None:
            if error:
                self.writer.add_text("error", error)
            self.writer.close()


def _read_png(path: Path):
    import matplotlib.image

    return matplotlib.image.imread(str(path))[..., :3]  # RGB floats in [0, 1]

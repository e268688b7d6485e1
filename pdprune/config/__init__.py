"""Configuration: schemas (Hydra ConfigStore), semantic validation, start-up checks."""

from pathlib import Path

from .schema import register

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

register()

__all__ = ["CONFIG_DIR", "register"]

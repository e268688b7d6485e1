"""Configuration: schemas (Hydra ConfigStore), semantic validation, start-up checks."""

from pathlib import Path

from .schema import register

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # shipped in the package

register()

__all__ = ["CONFIG_DIR", "register"]

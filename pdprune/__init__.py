"""pdprune: training-time pruning experiments from one Hydra-configured command, and a library
for your own training loop (pdprune.Pruning, docs/api.md)."""

__version__ = "0.1.0"

__all__ = ["Pruning", "compose_config"]


def __getattr__(name: str):
    # torch and friends load on first use: `prune-train` checks its config before that
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'pdprune' has no attribute {name!r}")

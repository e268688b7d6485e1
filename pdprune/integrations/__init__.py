"""pdprune inside other people's trainers.

    from pdprune.integrations import PruningCallback      # Hugging Face transformers.Trainer

Each integration imports its framework only when it is used: `import pdprune.integrations`
needs nothing beyond pdprune itself.
"""

__all__ = ["PruningCallback"]


def __getattr__(name: str):
    if name == "PruningCallback":
        from .transformers import PruningCallback
        return PruningCallback
    raise AttributeError(f"module 'pdprune.integrations' has no attribute {name!r}")

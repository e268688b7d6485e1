"""pdprune: training-time pruning experiments from one Hydra-configured command."""

__version__ = "0.1.0"

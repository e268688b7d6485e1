"""End of run: costs, summary, saved weights."""

from .cost import layer_macs, parameter_counts
from .summary import build_summary, format_summary, write_summary

__all__ = ["build_summary", "format_summary", "layer_macs", "parameter_counts", "write_summary"]

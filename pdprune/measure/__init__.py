"""Measuring a run: parameters, MACs, latency, training cost, and the summary that reports them."""

from .cost import layer_macs, parameter_counts, remaining_network
from .summary import build_summary, format_summary, write_summary

__all__ = ["build_summary", "format_summary", "layer_macs", "parameter_counts",
           "remaining_network", "write_summary"]

"""Structures: what a mask unit covers (weights, N:M groups, coupled channels, blocks)."""

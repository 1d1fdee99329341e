"""Measurement hooks: thin adapters that call a measurement on a schedule and return records.

Use them in the built-in loop (`normtheory.train.train(..., hooks=[...])`) or your own loop
through `Monitor`.
"""

from normtheory.hooks.base import EVENTS, Context, Hook, Monitor, Record
from normtheory.hooks.basic import GradNorm, LossAccuracy, WeightNorm

__all__ = [
    "EVENTS",
    "Context",
    "GradNorm",
    "Hook",
    "LossAccuracy",
    "Monitor",
    "Record",
    "WeightNorm",
]

"""Measurement hooks: thin adapters that call a measurement on a schedule and return records.

Use them in the built-in loop (`normtheory.train.train(..., hooks=[...])`) or your own loop
through `Monitor`.
"""

from normtheory.hooks.base import EVENTS, Context, Hook, Monitor, Record
from normtheory.hooks.basic import GradNorm, LossAccuracy, WeightNorm
from normtheory.hooks.batchstats import Singularities
from normtheory.hooks.curvature import (
    HessianDensity,
    HessianSpectrum,
    HessianTrace,
    OneStepLoss,
    Smoothness,
)
from normtheory.hooks.geometry import OrthogonalWeightNorm, ScaleInvariance
from normtheory.hooks.information import NeuronInformation

__all__ = [
    "EVENTS",
    "Context",
    "GradNorm",
    "HessianDensity",
    "HessianSpectrum",
    "HessianTrace",
    "Hook",
    "LossAccuracy",
    "Monitor",
    "NeuronInformation",
    "OneStepLoss",
    "OrthogonalWeightNorm",
    "Record",
    "ScaleInvariance",
    "Singularities",
    "Smoothness",
    "WeightNorm",
]

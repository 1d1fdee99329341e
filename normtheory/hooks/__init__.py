"""Measurement hooks: thin adapters that call a measurement on a schedule and return records.

Use them in the built-in loop (`normtheory.train.train(..., hooks=[...])`) or your own loop
through `Monitor`, whose sinks send the records to memory (default), CSV, Parquet or TensorBoard.
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
from normtheory.hooks.sinks import CSVSink, MemorySink, ParquetSink, Sink, TensorBoardSink

__all__ = [
    "CSVSink",
    "EVENTS",
    "Context",
    "GradNorm",
    "HessianDensity",
    "HessianSpectrum",
    "HessianTrace",
    "Hook",
    "LossAccuracy",
    "MemorySink",
    "Monitor",
    "NeuronInformation",
    "OneStepLoss",
    "OrthogonalWeightNorm",
    "ParquetSink",
    "Record",
    "ScaleInvariance",
    "Sink",
    "Singularities",
    "Smoothness",
    "TensorBoardSink",
    "WeightNorm",
]

"""Measurement hooks: thin adapters that call a measurement on a schedule and return records.

Use them in the built-in loop (`normtheory.train.train(..., hooks=[...])`) or your own loop
through `Monitor` (also a context manager, with ``monitor.step(...)`` around the optimizer step),
whose sinks send the records to memory (default), CSV, Parquet, TensorBoard or Weights & Biases;
`normtheory.integrations` runs them in Lightning and the Hugging Face `Trainer`.
Schedules (`every`, `evenly`, `at_end`) say when a hook runs; each hook class names the metrics
it records as constants (``LossAccuracy.TEST_LOSS == "outcome.test_loss"``, all in ``METRICS``).
"""

from normtheory.hooks.base import EVENTS, Context, Hook, Monitor, Record, rename
from normtheory.hooks.basic import GradNorm, LossAccuracy, WeightNorm
from normtheory.hooks.batchstats import BatchDependence, ExampleWeighing, Singularities
from normtheory.hooks.curvature import (
    HessianDensity,
    HessianSpectrum,
    HessianTrace,
    OneStepLoss,
    Smoothness,
)
from normtheory.hooks.geometry import ScaleInvariance
from normtheory.hooks.information import DropoutDependence, GradientSign, NeuronInformation
from normtheory.hooks.orthogonal import OrthogonalWeightNorm
from normtheory.hooks.preconditioned import LayerHessianBNP
from normtheory.hooks.schedule import Schedule, at_end, evenly, every
from normtheory.hooks.sinks import (
    CSVSink,
    MemorySink,
    ParquetSink,
    Sink,
    TensorBoardSink,
    WandbSink,
    pivot_records,
)

__all__ = [
    "BatchDependence",
    "CSVSink",
    "EVENTS",
    "Context",
    "DropoutDependence",
    "ExampleWeighing",
    "GradNorm",
    "GradientSign",
    "HessianDensity",
    "HessianSpectrum",
    "HessianTrace",
    "Hook",
    "LayerHessianBNP",
    "LossAccuracy",
    "MemorySink",
    "Monitor",
    "NeuronInformation",
    "OneStepLoss",
    "OrthogonalWeightNorm",
    "ParquetSink",
    "Record",
    "Schedule",
    "ScaleInvariance",
    "Sink",
    "Singularities",
    "Smoothness",
    "TensorBoardSink",
    "WandbSink",
    "WeightNorm",
    "at_end",
    "evenly",
    "every",
    "pivot_records",
    "rename",
]

"""Pure measurement functions: they read a model and data and leave both exactly as found."""

from normtheory.measure.curvature import (
    DensityResult,
    EigenResult,
    hessian_density,
    hessian_eigenvalues,
    smoothed_density,
)
from normtheory.measure.landscape import SmoothnessResult, gradient_smoothness
from normtheory.measure.outcomes import accuracy, evaluate
from normtheory.measure.trace import TraceResult, hessian_trace

__all__ = [
    "DensityResult",
    "EigenResult",
    "SmoothnessResult",
    "TraceResult",
    "accuracy",
    "evaluate",
    "gradient_smoothness",
    "hessian_density",
    "hessian_eigenvalues",
    "hessian_trace",
    "smoothed_density",
]

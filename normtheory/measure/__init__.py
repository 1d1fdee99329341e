"""Pure measurement functions: they read a model and data and leave both exactly as found."""

from normtheory.measure.curvature import (
    DensityResult,
    EigenResult,
    SmoothnessResult,
    TraceResult,
    gradient_smoothness,
    hessian_density,
    hessian_eigenvalues,
    hessian_trace,
)
from normtheory.measure.outcomes import accuracy, evaluate

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
]

"""Pure measurement functions: they read a model and data and leave both exactly as found."""

from normtheory.measure.outcomes import accuracy, evaluate

__all__ = ["accuracy", "evaluate"]

"""normtheory: puts the theory of normalization layers in deep networks to the test."""

__version__ = "0.1.0"

"""csa: a model-zoo manager for Convolutional Self-Attention backbones and their baselines."""

__version__ = "0.1.0"

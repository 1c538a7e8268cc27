"""fastgcn_denoise: fused kernels and models for denoising graph-convolutional recommenders."""
from .graph import BipartiteGraph

__version__ = "0.1.0"
__all__ = ["BipartiteGraph", "__version__"]

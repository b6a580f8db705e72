"""The Models screen: find GGUF repos, fit badges for this cluster, downloads, the library."""

from layerlab.ui.models.screen import ModelsScreen

__all__ = ["ModelsScreen"]

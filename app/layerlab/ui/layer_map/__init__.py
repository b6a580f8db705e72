"""The layer map: where each layer goes, per device, and what it costs, live."""

from layerlab.ui.layer_map.panel import LayerMapPanel

__all__ = ["LayerMapPanel"]

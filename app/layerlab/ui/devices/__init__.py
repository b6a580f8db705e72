"""The Devices panel: one live gauge per device, grouped by machine."""

from layerlab.ui.devices.panel import DevicesPanel

__all__ = ["DevicesPanel"]

"""What the loaded model looks like in the Devices panel and the layer map.

On Ready, the gauges learn which layers they hold and how many bytes of the model, and the
map shows what llama.cpp really allocated beside its forecast, as long as the map still
shows the plan that was loaded. Anything else (loading, failed, stopped) clears both.
"""

from __future__ import annotations

from PySide6.QtCore import QObject

from layerlab.core.devices.placement import memory_by_device
from layerlab.core.engine.supervisor import EngineState, Ready
from layerlab.core.load_plan import LoadPlan, layers_by_device
from layerlab.ui.devices.panel import DevicesPanel
from layerlab.ui.layer_map.panel import LayerMapPanel


def same_load(a: LoadPlan, b: LoadPlan) -> bool:
    """The same load, whatever the model is called in the API."""
    da, db = a.to_dict(), b.to_dict()
    da.pop("model_name")
    db.pop("model_name")
    return da == db


class LoadedModelView(QObject):
    def __init__(
        self, devices: DevicesPanel, layer_map: LayerMapPanel, parent: QObject | None = None
    ):
        super().__init__(parent)
        self.devices = devices
        self.map = layer_map
        self.loaded: Ready | None = None
        self.actual: dict[str, int] = {}
        layer_map.planChanged.connect(self._map_replanned)

    def show_state(self, state: EngineState) -> None:
        if isinstance(state, Ready):
            self.loaded = state
            self.actual = memory_by_device(state.placement.allocations)
            self.devices.set_layer_placement(layers_by_device(state.placement.layer_devices))
            self.devices.set_model_memory(self.actual)
        else:
            self.loaded, self.actual = None, {}
            self.devices.set_layer_placement({})
            self.devices.set_model_memory({})
        self._map_replanned()

    def _map_replanned(self, _plan: LoadPlan | None = None) -> None:
        r = self.map.result
        showing_loaded = bool(self.loaded and r and same_load(r.plan, self.loaded.plan))
        self.map.show_actual(self.actual if showing_loaded else None)

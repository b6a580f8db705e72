"""The layer map's forecast uses the recorded calibration (read off the GUI thread), and its
CPU threads control reaches the plan that loads."""

from __future__ import annotations

import pytest

from layerlab.core.gguf import check_model_file
from layerlab.core.planner.calibration import Calibration, device_identity
from layerlab.core.planner.devices import host_device
from layerlab.core.planner.planner import Planner, PlanOptions
from layerlab.ui.layer_map import LayerMapPanel
from layerlab.ui.layer_map.adapter import PlanModel

pytestmark = pytest.mark.gui


def test_the_layer_map_forecasts_with_what_was_measured(qtbot, demo_model, tmp_path):
    facts = check_model_file(str(demo_model))
    host = host_device(8 << 30, 16 << 30)
    constants = Planner(facts).plan([host], PlanOptions()).speed.generation_tps
    path = tmp_path / "cal.json"
    cal = Calibration(path)
    cal.record_device(device_identity(host.machine, host.name), 5e9)
    cal.save()

    model = PlanModel(calibration_path=path)
    model.set_facts(facts, str(demo_model))
    model.set_devices([host])
    qtbot.waitUntil(
        lambda: model.result is not None and model.result.speed.generation_tps < constants * 0.8,
        timeout=5000,
    )
    # a later model (another file opened) keeps the figures
    model.set_facts(facts, str(demo_model))
    assert model.result is not None and model.result.speed.generation_tps < constants * 0.8


def test_the_threads_control_reaches_the_plan(qtbot, demo_model):
    panel = LayerMapPanel()
    qtbot.addWidget(panel)
    panel.set_devices([host_device(8 << 30, 16 << 30)])
    panel.set_model_facts(check_model_file(str(demo_model)), str(demo_model))
    result = panel.result
    assert result is not None and result.plan.n_threads is None
    assert panel.controls.threads.text() == "auto"
    panel.controls.threads.setValue(2)
    result = panel.result
    assert result is not None and result.plan.n_threads == 2
    panel.controls.threads.setValue(0)
    result = panel.result
    assert result is not None and result.plan.n_threads is None

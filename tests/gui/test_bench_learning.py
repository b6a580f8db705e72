"""The open window forecasts with what was just measured: a finished bench run, and the
measurement after a load, change the layer map's forecast without a restart."""

from __future__ import annotations

import pytest

from layerlab.core.bench import BenchSettings
from layerlab.core.engine.supervisor import Failed, Ready, WatchSettings
from layerlab.core.gguf import check_model_file
from layerlab.core.head import Head
from layerlab.core.load_plan import LoadPlan
from layerlab.core.planner.calibration import Calibration
from layerlab.core.planner.planner import Planner
from layerlab.core.settings import Settings
from layerlab.ui.main_window import MainWindow

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture
def window(qtbot, demo_model, tmp_path):
    head = Head(
        Settings(n_ctx=2048, model_path=str(demo_model)),
        tmp_path / "settings.json",
        state_dir=tmp_path / "head",
        watch=WatchSettings(interval_s=0.3),
    )
    win = MainWindow(head, demo_model, "demo")
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.layer_map.result is not None, timeout=30_000)
    yield win
    win.close()
    win.controller.shutdown()


def map_tps(win) -> float:
    result = win.layer_map.result
    assert result is not None
    return result.speed.generation_tps


def recorded_tps(win, demo_model) -> float:
    """What a planner made now, from the file the head's bench writes, forecasts for the
    map's devices and options."""
    cal = Calibration.load(win.head.bench.calibration_path)
    planner = Planner(check_model_file(str(demo_model)), str(demo_model), cal)
    model = win.layer_map.model
    return planner.plan(model.devices, model.options).speed.generation_tps


def changed(before: float, now: float) -> bool:
    return abs(now - before) > 0.05 * before


def test_a_finished_bench_run_changes_the_layer_maps_forecast(qtbot, window, demo_model):
    win = window
    assert win.head.bench.calibration_path is not None
    assert not win.head.bench.calibration_path.exists()  # the constants, for now
    before = map_tps(win)
    screen = win.bench
    for box in (screen.strategies, screen.subsets, screen.splits, screen.modes, screen.threads):
        box.setChecked(False)  # the planner's pick alone: this machine's CPU
    screen.start(BenchSettings(n_prompt=16, n_gen=16, reps=2))
    qtbot.waitUntil(lambda: screen.run_result is not None, timeout=150_000)
    run = screen.run_result
    assert run is not None and run.measured and run.learned, run.rows
    assert "Learned:" in screen.message.text()
    # the map re-reads the figures off the GUI thread and re-plans with them
    qtbot.waitUntil(lambda: changed(before, map_tps(win)), timeout=10_000)
    assert map_tps(win) == pytest.approx(recorded_tps(win, demo_model), rel=1e-9)


def test_the_measurement_after_a_load_changes_the_layer_maps_forecast(qtbot, window, demo_model):
    win = window
    before = map_tps(win)
    win.head.load(LoadPlan(str(demo_model), n_ctx=512))
    qtbot.waitUntil(lambda: isinstance(win.head.state, Ready | Failed), timeout=120_000)
    assert isinstance(win.head.state, Ready), win.head.state
    qtbot.waitUntil(lambda: getattr(win.head, "after_load", None) is not None, timeout=10_000)
    job = win.head.after_load
    qtbot.waitUntil(job.done.is_set, timeout=60_000)
    assert job.learned, job.stopped_because
    qtbot.waitUntil(lambda: changed(before, map_tps(win)), timeout=10_000)
    assert map_tps(win) == pytest.approx(recorded_tps(win, demo_model), rel=1e-9)

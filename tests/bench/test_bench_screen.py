"""The Bench screen on a real head: Run measures off the GUI thread, the table and chart
fill, Apply fastest hands the winning plan on, Export writes what parses back; a loaded
model is said in words instead of being benched over."""

from __future__ import annotations

import csv

import pytest

from layerlab.core.bench import BenchSettings
from layerlab.core.head.head import Head
from layerlab.core.load_plan import LoadPlan
from layerlab.core.settings import Settings
from layerlab.ui.bench.screen import BenchScreen

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture
def head(tmp_path, demo_model):
    h = Head(Settings(model_path=str(demo_model)), persist=False, state_dir=tmp_path / "head")
    yield h
    h.close()


def test_run_apply_and_export(qtbot, head, tmp_path):
    screen = BenchScreen(head)
    qtbot.addWidget(screen)
    for box in (screen.strategies, screen.subsets, screen.splits, screen.modes):
        box.setChecked(False)
    screen.threads.setChecked(True)  # the planner's pick and the thread sweep: 1, 2, 4
    screen.start(BenchSettings(n_prompt=16, n_gen=4, reps=1))
    qtbot.waitUntil(lambda: screen.run_result is not None, timeout=150_000)
    run = screen.run_result
    assert run is not None and len(run.measured) >= 3
    assert screen.table.rowCount() == len(run.measured)
    assert screen.table.item(0, 3).text() != "–"  # the forecast beside the measured figure
    assert screen.apply_button.isEnabled() and screen.run_button.isEnabled()
    with qtbot.waitSignal(screen.planChosen, timeout=2000) as chosen:
        screen.apply_button.click()
    plan = chosen.args[0]
    assert isinstance(plan, LoadPlan)
    assert plan.n_threads == run.fastest().config.plan.n_threads
    screen.export(tmp_path / "bench.csv")
    rows = list(csv.DictReader((tmp_path / "bench.csv").read_text().splitlines()))
    assert len(rows) == len(run.rows)


def test_a_loaded_model_is_said_in_words(qtbot, head, demo_model):
    head.load(LoadPlan(str(demo_model), n_ctx=512))
    qtbot.waitUntil(lambda: type(head.state).__name__ in ("Ready", "Failed"), timeout=60_000)
    screen = BenchScreen(head)
    qtbot.addWidget(screen)
    screen.start(BenchSettings(n_prompt=16, n_gen=4, reps=1))
    qtbot.waitUntil(lambda: "Unload the model first" in screen.message.text(), timeout=30_000)
    assert screen.run_button.isEnabled()

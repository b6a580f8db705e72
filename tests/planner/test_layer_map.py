"""The layer map panel, offscreen: it matches the plan, and drags and edits re-plan live."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from layerlab.core.devices.rig import load_rig
from layerlab.core.gguf import read_facts
from layerlab.core.load_plan import LoadPlan, expected_layer_devices
from layerlab.core.units import GiB
from layerlab.ui.layer_map import LayerMapPanel
from tests.support.synthetic_gguf import LLAMA_70B, write_model

pytestmark = pytest.mark.gui
RIGS = Path(__file__).parents[1] / "fixtures" / "rigs"


@pytest.fixture(scope="module")
def facts_70b(tmp_path_factory):
    return read_facts(
        write_model(tmp_path_factory.mktemp("m") / "70b.gguf", LLAMA_70B, sparse=True)
    )


@pytest.fixture
def panel(qtbot, facts_70b):
    p = LayerMapPanel()
    qtbot.addWidget(p)
    p.resize(960, 600)
    p.set_machines([load_rig(RIGS / "3090-p40.json")])
    with qtbot.waitSignal(p.planChanged, timeout=2000):
        p.set_model_facts(facts_70b, "/models/70b.gguf")
    p.show()
    qtbot.waitExposed(p)
    return p


def _ribbon_matches(panel, plan: LoadPlan, n_layer: int) -> None:
    placement = expected_layer_devices(plan, n_layer)
    labels, counts = panel.ribbon.labels, panel.ribbon.counts
    expanded = [lb for lb, c in zip(labels, counts, strict=True) for _ in range(c)]
    assert expanded == placement
    for r in panel.result.devices:
        row = panel.rows[r.device.label]
        assert row.layers.text() == (
            "token embeddings only" if r.n_units == 0 else f"layers {r.layers_text}"
        )


def test_map_matches_the_plan(panel, facts_70b):
    r = panel.result
    assert r.verdict == "fits"
    assert list(panel.rows) == ["CPU", "CUDA0", "CUDA1"]
    _ribbon_matches(panel, r.plan, facts_70b.n_layer)
    assert "tok/s" in panel.summary.text()


def test_dragging_a_boundary_replans_live(panel, qtbot, facts_70b):
    before = list(panel.ribbon.counts)
    rib = panel.ribbon
    b = 1  # between CUDA0 and CUDA1
    x = int(rib.boundary_x(b))
    y = rib.height() // 2
    target = int(rib.unit_x(sum(before[: b + 1]) - 10))
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        qtbot.mousePress(rib, Qt.MouseButton.LeftButton, pos=QPoint(x, y))
        qtbot.mouseMove(rib, QPoint((x + target) // 2, y))
        qtbot.mouseMove(rib, QPoint(target, y))
        qtbot.mouseRelease(rib, Qt.MouseButton.LeftButton, pos=QPoint(target, y))
    plan: LoadPlan = sig.args[0]
    assert panel.model.options.strategy == "manual"
    assert panel.ribbon.counts[1] < before[1] and panel.ribbon.counts[2] > before[2]
    assert plan.tensor_split == [float(c) for c in panel.ribbon.counts[1:]]
    _ribbon_matches(panel, plan, facts_70b.n_layer)
    assert panel.controls.strategy.currentData() == "manual"


def test_context_and_cache_type_replan(panel, qtbot):
    kv_before = panel.result.device("CUDA0").memory.kv
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        panel.controls.ctx.setValue(16384)
    assert sig.args[0].n_ctx == 16384
    assert panel.result.device("CUDA0").memory.kv > kv_before
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        panel.controls.cache.setCurrentIndex(panel.controls.cache.findData("q4_0"))
    assert sig.args[0].type_k == "q4_0" and sig.args[0].flash_attn


def test_answers_at_once_replans_with_their_kv(panel, qtbot):
    start = panel.controls.parallel.value()
    one = 2 if start == 1 else 1  # a value the box does not hold yet, so it signals
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        panel.controls.parallel.setValue(one)
    assert sig.args[0].parallel == one
    # the whole KV cache (layers may move between devices when it grows)
    kv_one = sum(d.memory.kv for d in panel.result.devices) / one
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        panel.controls.parallel.setValue(3)
    assert sig.args[0].parallel == 3 and panel.controls.parallel.value() == 3
    assert sum(d.memory.kv for d in panel.result.devices) == pytest.approx(3 * kv_one, rel=0.01)


def test_reserve_exclude_and_ratio(panel, qtbot):
    row = panel.rows["CUDA0"]
    with qtbot.waitSignal(panel.planChanged, timeout=2000):
        _type(qtbot, row.reserve, "4")
    assert panel.result.device("CUDA0").free_after >= 4 * GiB
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        panel.rows["CUDA1"].exclude.setChecked(False)
    assert [d.name for d in sig.args[0].devices] == ["CUDA0"]
    assert panel.result.verdict == "fits with CPU offload"
    with qtbot.waitSignal(panel.planChanged, timeout=2000):
        panel.rows["CUDA1"].exclude.setChecked(True)
    with qtbot.waitSignal(panel.planChanged, timeout=2000) as sig:
        _type(qtbot, panel.rows["CUDA1"].ratio, "60")
    assert panel.model.options.strategy == "manual"


def _type(qtbot, spin, text: str) -> None:
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin.lineEdit(), text)
    qtbot.keyClick(spin, Qt.Key.Key_Return)


def test_forecast_beside_actual(panel):
    fc = panel.result.device("CUDA0").memory.total
    panel.show_actual({"CUDA0": fc - 100 * 1024 * 1024})
    text = panel.rows["CUDA0"].actual.text()
    assert "actual" in text and "error +100 MiB" in text
    panel.show_actual(None)
    assert panel.rows["CUDA0"].actual.text() == ""

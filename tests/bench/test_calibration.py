"""The speed model's calibration: recorded figures change the next forecast; stale, absurd
or damaged ones are ignored."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from layerlab.core.gguf import check_model_file
from layerlab.core.planner.calibration import Calibration, device_identity
from layerlab.core.planner.devices import host_device
from layerlab.core.planner.planner import Planner, PlanOptions


@pytest.fixture(scope="module")
def planner(demo_model) -> Planner:
    return Planner(check_model_file(str(demo_model)), str(demo_model))


def forecast(planner: Planner, cal: Calibration | None) -> float:
    planner.speed_model.calibration = cal
    try:
        host = host_device(8 << 30, 16 << 30)
        return planner.plan([host], PlanOptions(n_ctx=1024)).speed.generation_tps
    finally:
        planner.speed_model.calibration = None


HOST = device_identity("this machine", "Host RAM")


def test_a_recorded_device_changes_the_next_forecast(planner, tmp_path):
    before = forecast(planner, None)
    cal = Calibration(tmp_path / "cal.json")
    assert cal.record_device(HOST, 5e9, threads=2)
    cal.save()
    after = forecast(planner, Calibration.load(tmp_path / "cal.json"))
    assert after < before * 0.8  # 5 GB/s effective is well below 50 GB/s x 0.6
    assert Calibration.load(tmp_path / "cal.json").threads(HOST) == 2


def test_learning_from_a_measurement_reproduces_it(planner, tmp_path):
    cal = Calibration(tmp_path / "cal.json")
    host = host_device(8 << 30, 16 << 30)
    result = planner.plan([host], PlanOptions(n_ctx=1024))
    spans = [(d.device, d.first, d.last, d.has_output) for d in result.devices]
    said = planner.speed_model.learn(spans, [d.memory.kv for d in result.devices], 80.0, cal)
    assert said and "GB/s" in said[0]
    assert forecast(planner, cal) == pytest.approx(80.0, rel=1e-6)


def test_a_stale_measurement_is_ignored(planner, tmp_path):
    clock = [time.time() - 90 * 24 * 3600]  # measured three months ago
    cal = Calibration(tmp_path / "cal.json", now=lambda: clock[0])
    cal.record_device(HOST, 5e9)
    clock[0] = time.time()
    assert cal.device(HOST) is None
    assert forecast(planner, cal) == pytest.approx(forecast(planner, None))


@pytest.mark.parametrize("bandwidth", [1.0, 1e18, float("nan"), float("inf"), -5e9])
def test_an_absurd_measurement_is_ignored(planner, tmp_path, bandwidth):
    cal = Calibration(tmp_path / "cal.json")
    assert cal.record_device(HOST, bandwidth) is None
    # written by hand (another version, a bad edit): still not trusted
    (tmp_path / "cal.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "devices": {HOST: {"bandwidth": bandwidth, "measured_at": time.time()}},
                "links": {"127.0.0.1:50052": {"hop_s": 30.0, "measured_at": time.time()}},
            }
        )
    )
    loaded = Calibration.load(tmp_path / "cal.json")
    assert loaded.device(HOST) is None
    assert loaded.link("127.0.0.1:50052") is None
    assert forecast(planner, loaded) == pytest.approx(forecast(planner, None))


def test_a_damaged_file_means_the_constants(planner, tmp_path):
    (tmp_path / "cal.json").write_text("{not json")
    cal = Calibration.load(tmp_path / "cal.json")
    assert cal.devices == {} and cal.links == {}
    assert forecast(planner, cal) == pytest.approx(forecast(planner, None))


def test_a_worker_cpu_borrows_the_same_part_measured_here(tmp_path):
    cal = Calibration(tmp_path / "cal.json")
    cal.record_device(device_identity("this machine", "Host RAM (AMD EPYC)"), 9e9)
    f = cal.same_part("127.0.0.1:50052", "AMD EPYC on 127.0.0.1:50052")
    assert f is not None and f.bandwidth == 9e9
    assert cal.same_part("127.0.0.1:50052", "Intel Xeon on 127.0.0.1:50052") is None


def test_one_workers_own_figure_does_not_become_another_workers(tmp_path):
    # A bench scales worker B's figure to what B's process did; worker A (same part, no
    # figure of its own) still reads the part as measured here, whatever the names sort to.
    cal = Calibration(tmp_path / "cal.json")
    cal.record_device(device_identity("this machine", "Host RAM (AMD EPYC)"), 9e9)
    cal.record_device(device_identity("127.0.0.1:50050", "AMD EPYC on 127.0.0.1:50050"), 12e9)
    f = cal.same_part("127.0.0.1:50060", "AMD EPYC on 127.0.0.1:50060")
    assert f is not None and f.bandwidth == 9e9
    own = cal.same_part("127.0.0.1:50050", "AMD EPYC on 127.0.0.1:50050")
    assert own is not None and own.bandwidth == 12e9


def test_a_planner_given_the_calibration_forecasts_with_it(demo_model, tmp_path):
    cal = Calibration(tmp_path / "cal.json")
    cal.record_device(HOST, 5e9)
    facts = check_model_file(str(demo_model))
    host = host_device(8 << 30, 16 << 30)
    plain = Planner(facts, str(demo_model)).plan([host], PlanOptions(n_ctx=1024))
    taught = Planner(facts, str(demo_model), cal).plan([host], PlanOptions(n_ctx=1024))
    assert taught.speed.generation_tps < plain.speed.generation_tps * 0.8


def test_the_threads_measured_here_fill_a_plan_that_leaves_them_open(tmp_path):
    from layerlab.core.load_plan import LoadPlan
    from layerlab.core.planner.calibration import with_measured_threads

    path = tmp_path / "cal.json"
    plan = LoadPlan("model.gguf")
    assert with_measured_threads(plan, path).n_threads is None  # nothing measured: llama.cpp's
    cal = Calibration(path)
    cal.record_device(device_identity("127.0.0.1:50052", "AMD EPYC on 127.0.0.1:50052"), 9e9, 7)
    cal.record_device(device_identity("this machine", "Host RAM (AMD EPYC)"), 9e9, threads=3)
    cal.save()
    assert with_measured_threads(plan, path).n_threads == 3  # this machine's, not a worker's
    assert with_measured_threads(plan.model_copy(update={"n_threads": 1}), path).n_threads == 1


def test_the_layer_map_threads_choice_reaches_the_plan(planner):
    host = host_device(8 << 30, 16 << 30)
    assert planner.plan([host], PlanOptions(n_ctx=1024)).plan.n_threads is None
    assert planner.plan([host], PlanOptions(n_ctx=1024, n_threads=2)).plan.n_threads == 2


def test_fit_badges_and_layerlab_plan_forecast_with_what_was_measured(
    demo_model, tmp_path, monkeypatch
):
    import subprocess
    import sys

    from layerlab.core.hub.fit import plan_on
    from layerlab.core.planner.calibration import calibration_path
    from layerlab.core.planner.inputs import this_machine_devices

    facts = check_model_file(str(demo_model))
    host = host_device(8 << 30, 16 << 30)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    def cli_tps() -> float:
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "layerlab"),
                "plan",
                str(demo_model),
                "--ctx",
                "1024",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        return json.loads(out)["generation_tok_s"]

    badge_before = plan_on(facts, [host], 1024).speed.generation_tps
    cli_before = cli_tps()
    here = next(d for d in this_machine_devices() if d.is_host)
    cal = Calibration(calibration_path())
    assert str(cal.path).startswith(str(tmp_path))
    cal.record_device(HOST, 5e9)
    cal.record_device(device_identity(here.machine, here.name), 5e9)
    cal.save()
    assert plan_on(facts, [host], 1024).speed.generation_tps < badge_before * 0.8
    assert cli_tps() < cli_before * 0.8


# -- a worker reading faster than its part measured here: two readings must agree -------

WORKER = "127.0.0.1:50052"
WORKER_CPU = device_identity(WORKER, f"AMD EPYC on {WORKER}")


def worker_placement(facts):
    """The whole model on one loopback worker's CPU, the head holding nothing."""
    from layerlab.core.load_plan import DeviceRef
    from layerlab.core.planner.devices import PlanDevice

    host = host_device(8 << 30, 16 << 30, name="Host RAM (AMD EPYC)")
    worker = PlanDevice(
        f"RPC {WORKER}",
        f"AMD EPYC on {WORKER}",
        WORKER,
        DeviceRef.rpc(WORKER, 0),
        8 << 30,
        16 << 30,
        50e9,
        0.5e12,
        rtt_s=1e-4,
        kind="cpu",
    )
    return [(host, 0, 0, False), (worker, 0, facts.n_layer, True)], [0, 1 << 20]


def measured_here(tmp_path) -> Calibration:
    cal = Calibration(tmp_path / "cal.json")
    assert cal.record_device(device_identity("this machine", "Host RAM (AMD EPYC)"), 9e9)
    return cal


def tps(facts, cal: Calibration, spans, kv) -> float:
    from layerlab.core.planner.speed import SpeedModel

    return SpeedModel(facts, cal).predict(spans, kv).generation_tps


def no_link_tps(facts, cal: Calibration, spans, kv) -> float:
    """What the figures say with a free link: a measurement above it can only mean the
    worker's CPU reads faster than the part measured here."""
    free = Calibration()
    free.devices = dict(cal.devices)
    assert free.record_link(WORKER, 0.0)
    return tps(facts, free, spans, kv)


def teach(facts, cal: Calibration, spans, kv, measured: float) -> list[str]:
    from layerlab.core.planner.speed import SpeedModel

    return SpeedModel(facts).learn(spans, kv, measured, cal)


def test_one_fast_reading_does_not_rescale_a_worker(planner, tmp_path):
    facts = planner.facts
    spans, kv = worker_placement(facts)
    cal = measured_here(tmp_path)
    before = tps(facts, cal, spans, kv)
    base = no_link_tps(facts, cal, spans, kv)
    said = teach(facts, cal, spans, kv, base * 1.3)
    assert len(said) == 1 and "once" in said[0] and "15%" in said[0]
    assert cal.device(WORKER_CPU) is None and cal.link(WORKER) is None  # nothing recorded
    assert tps(facts, cal, spans, kv) == pytest.approx(before)  # the old figures stand
    cal.save()
    again = Calibration.load(tmp_path / "cal.json")  # the next bench, another process
    assert again.device(WORKER_CPU) is None and WORKER_CPU in again.unconfirmed
    assert tps(facts, again, spans, kv) == pytest.approx(before)


def test_two_readings_that_agree_rescale_the_worker(planner, tmp_path):
    facts = planner.facts
    spans, kv = worker_placement(facts)
    cal = measured_here(tmp_path)
    base = no_link_tps(facts, cal, spans, kv)
    assert "once" in teach(facts, cal, spans, kv, base * 1.30)[0]
    cal.save()
    cal = Calibration.load(tmp_path / "cal.json")
    said = teach(facts, cal, spans, kv, base * 1.36)  # ~5% apart: they agree
    assert any("two measurements agree" in s for s in said), said
    assert cal.device(WORKER_CPU) is not None and cal.link(WORKER) is not None
    assert WORKER_CPU not in cal.unconfirmed
    # the forecast lies between the two readings (their mean bandwidth, a free link)
    assert base * 1.30 < tps(facts, cal, spans, kv) < base * 1.36
    # the head's own CPU figure is the head's, untouched
    here = cal.device(device_identity("this machine", "Host RAM (AMD EPYC)"))
    assert here is not None and here.bandwidth == 9e9


def test_readings_that_disagree_wait_for_one_that_agrees(planner, tmp_path):
    facts = planner.facts
    spans, kv = worker_placement(facts)
    cal = measured_here(tmp_path)
    before = tps(facts, cal, spans, kv)
    base = no_link_tps(facts, cal, spans, kv)
    teach(facts, cal, spans, kv, base * 1.3)
    said = teach(facts, cal, spans, kv, base * 1.8)  # ~40% apart: one of them is wrong
    assert len(said) == 1 and "once" in said[0]
    assert cal.device(WORKER_CPU) is None and cal.link(WORKER) is None
    assert tps(facts, cal, spans, kv) == pytest.approx(before)
    said = teach(facts, cal, spans, kv, base * 1.85)  # agrees with the latest reading
    assert any("two measurements agree" in s for s in said), said
    assert base * 1.8 < tps(facts, cal, spans, kv) < base * 1.85


def test_a_stale_lone_reading_is_not_confirmed_by_a_new_one(tmp_path):
    clock = [time.time() - 90 * 24 * 3600]
    cal = Calibration(tmp_path / "cal.json", now=lambda: clock[0])
    assert cal.note_unconfirmed(WORKER_CPU, 12e9)
    clock[0] = time.time()
    assert cal.agreed(WORKER_CPU, 12e9) is None  # three months ago: not a second reading
    assert cal.note_unconfirmed(WORKER_CPU, 12e9)
    assert cal.agreed(WORKER_CPU, 13e9) == pytest.approx(12.5e9)
    assert cal.agreed(WORKER_CPU, 14e9) is None  # 16.7% above: they do not agree
    assert not cal.note_unconfirmed(WORKER_CPU, float("nan"))


def test_a_known_link_does_not_hide_a_worker_reading_faster(planner, tmp_path):
    # Another placement recorded the worker's link already; this one, all on the worker,
    # is faster than its part measured here allows even over a free link.
    facts = planner.facts
    spans, kv = worker_placement(facts)
    cal = measured_here(tmp_path)
    assert cal.record_link(WORKER, 2e-4)
    base = no_link_tps(facts, cal, spans, kv)
    said = teach(facts, cal, spans, kv, base * 1.3)
    assert len(said) == 1 and "once" in said[0]
    link = cal.link(WORKER)
    assert link is not None and link.hop_s == 2e-4  # kept, as the device's figure
    assert cal.device(WORKER_CPU) is None
    said = teach(facts, cal, spans, kv, base * 1.32)
    assert any("two measurements agree" in s for s in said), said
    link = cal.link(WORKER)
    assert link is not None and link.hop_s == 0.0
    assert base * 1.3 < tps(facts, cal, spans, kv) < base * 1.32
    # slower than the figures over a free link: the link's figure is measured again
    said = teach(facts, cal, spans, kv, base * 1.1)
    assert said and said[0].startswith(f"link to {WORKER}")
    link = cal.link(WORKER)
    assert link is not None and link.hop_s > 0

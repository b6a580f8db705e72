"""The settings file: validated on load, a versioned schema, a bad file set aside with words,
never a traceback and never the loss of the workers that were fine."""

from __future__ import annotations

import json

from layerlab.core.settings import SCHEMA_VERSION, SavedWorker, Settings


def test_round_trip_with_schema_version(tmp_path):
    path = tmp_path / "settings.json"
    s = Settings(n_ctx=2048, workers=[SavedWorker("10.0.0.5:50052"), SavedWorker("b:1", False)])
    s.save(path)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION
    back = Settings.load(path)
    assert back.n_ctx == 2048
    assert [(w.address, w.enabled) for w in back.workers] == [
        ("10.0.0.5:50052", True),
        ("b:1", False),
    ]
    assert back.problems == []


def test_not_json_gives_defaults_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"n_ctx": 2048, "workers": [')  # cut off mid-write by another tool
    s = Settings.load(path)
    assert s.n_ctx == 4096 and s.workers == []
    assert len(s.problems) == 1 and "not valid JSON" in s.problems[0]
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("settings.json.bad-")]
    assert len(kept) == 1 and kept[0].read_text() == '{"n_ctx": 2048, "workers": ['
    assert str(kept[0]) in s.problems[0]


def test_a_bad_field_or_worker_costs_only_itself(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "n_ctx": "big",
                "model_path": "/models/a.gguf",
                "workers": [
                    {"address": "10.0.0.5:50052"},
                    {"address": "not an address::"},
                    "junk",
                    {"address": "10.0.0.6:50052", "enabled": False},
                ],
            }
        )
    )
    s = Settings.load(path)
    assert s.model_path == "/models/a.gguf" and s.n_ctx == 4096
    assert [w.address for w in s.workers] == ["10.0.0.5:50052", "10.0.0.6:50052"]
    assert s.workers[1].enabled is False
    assert any("'n_ctx'" in p for p in s.problems)
    assert sum("saved worker could not be used" in p for p in s.problems) == 2
    assert any(p.startswith("The settings file as it was is kept as") for p in s.problems)
    assert not any("Traceback" in p or "validation error" in p for p in s.problems)


def test_a_newer_schema_keeps_what_this_version_knows(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 99, "n_ctx": 8192, "future": {"x": 1}}))
    s = Settings.load(path)
    assert s.n_ctx == 8192
    assert any("newer LayerLab" in p for p in s.problems)
    assert any(p.name.startswith("settings.json.newer-v99-") for p in tmp_path.iterdir())


def test_not_an_object_and_unreadable(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("[1, 2]")
    assert "does not hold settings" in Settings.load(path).problems[0]
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert "could not be read" in Settings.load(path).problems[0]

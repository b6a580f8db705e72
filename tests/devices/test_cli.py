from __future__ import annotations

import json

from layerlab.cli.main import main
from layerlab.core.devices.rig import load_rig
from tests.devices.conftest import RIGS


def test_json_inventory_of_a_rig(capsys):
    assert main(["devices", "--rig", str(RIGS / "4090-7900xtx.json"), "--json"]) == 0
    (m,) = json.loads(capsys.readouterr().out)["machines"]
    names = [d["llama_name"] for d in m["devices"]]
    assert names == ["Vulkan0", "Vulkan1", None, "CPU"]
    assert m["unseen_by_llama"] == ["drm:0000:13:00.0"]
    assert set(m["samples"]) == {d["key"] for d in m["devices"]}  # one sample per device
    assert all(isinstance(s["memory_used"], int) for s in m["samples"].values())


def test_text_says_cpu_only_in_one_line(capsys):
    assert main(["devices", "--rig", str(RIGS / "no-gpu-server.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln for ln in out if "CPU only" in ln] == [out[-1]]


def test_record_writes_a_loadable_rig(tmp_path, capsys):
    path = tmp_path / "mine.json"
    assert main(["devices", "--record", str(path), "--name", "my box", "--no-llama"]) == 0
    assert load_rig(path).name == "my box"


def test_bad_rig_is_an_error_message(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("[]")
    assert main(["devices", "--rig", str(bad)]) == 2
    assert "not a LayerLab rig" in capsys.readouterr().err

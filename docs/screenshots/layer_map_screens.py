"""Render the layer map for a header-only 70B on three GPUs and save it as a PNG.

xvfb-run -a python docs/screenshots/layer_map_screens.py [OUT.png]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.support (the header-only model writer)
OUT = Path(__file__).resolve().parent / "layer-map-70b-3gpu.png"


def build_panel(tmp: Path):
    from layerlab.core.devices.rig import load_rig
    from layerlab.core.gguf import check_model_file
    from layerlab.ui.layer_map import LayerMapPanel
    from tests.support.synthetic_gguf import LLAMA_70B, write_model

    rigs = ROOT / "tests" / "fixtures" / "rigs"
    head = load_rig(rigs / "3090-p40.json")
    worker = load_rig(rigs / "2x3060.json")
    worker.name = "192.168.1.20:50052"
    worker.devices = [d for d in worker.devices if d.llama_name == "CUDA0"]
    worker.devices = [replace(d, machine=worker.name) for d in worker.devices]
    path = write_model(tmp / "Llama-3-70B-Q4_K_M.gguf", LLAMA_70B, sparse=True)
    panel = LayerMapPanel()
    panel.set_model_facts(check_model_file(path), str(path))
    panel.set_machines([head, worker], rtts={worker.name: 0.0006})
    panel.controls.ctx.setValue(8192)
    return panel


def main(out: str) -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as tmp:
        panel = build_panel(Path(tmp))
        panel.resize(980, 640)
        panel.show()
        app.processEvents()
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        panel.grab().save(out)
        panel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(OUT)))

"""Screenshots of the Models screen against a local stand-in of the hub (no internet):
search results, a repo's quants with fit badges, a download in progress, the library.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python docs/screenshots/make_models_screens.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = Path(__file__).parent


def main() -> None:
    from PySide6.QtWidgets import QApplication

    from layerlab.core.devices.rig import load_rig
    from layerlab.core.head import Head
    from layerlab.core.hub.config import HubConfig
    from layerlab.core.hub.hub import Cluster, ModelHub
    from layerlab.core.planner.devices import devices_from_machine
    from layerlab.ui.models import ModelsScreen
    from tests.support.hub_standin import HubStandIn
    from tests.support.synthetic_gguf import LLAMA_70B, ModelSpec, Q, write_model, write_split

    app = QApplication.instance() or QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp(prefix="models-shots-"))
    tiny = tmp / "tiny"
    tiny.mkdir()
    spec = ModelSpec(n_layer=4, n_embd=256, n_ff=512, n_vocab=512)
    for tag, t in [("F16", Q.F16), ("Q8_0", Q.Q8_0), ("Q4_0", Q.Q4_0)]:
        write_model(tiny / f"SmolChat-{tag}.gguf", ModelSpec(**{**spec.__dict__, "weight_type": t}))
    write_split(tiny, ModelSpec(**{**spec.__dict__, "weight_type": Q.Q4_K}), 2, "SmolChat-Q4_K_M")
    big = tmp / "big"
    big.mkdir()
    for tag in ["Q2_K", "Q4_K_M", "Q8_0"]:
        write_model(big / f"Llama-3.3-70B-Instruct-{tag}.gguf", LLAMA_70B, sparse=True)
    rig = devices_from_machine(load_rig(ROOT / "tests/fixtures/rigs/2x3060.json"))

    def wait(cond, s=15.0):
        end = time.monotonic() + s
        while not cond() and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    with HubStandIn() as hub:
        hub.add_repo(
            "bartowski/Llama-3.3-70B-Instruct-GGUF",
            big,
            downloads=412_000,
            likes=310,
            parameters=70_550_000_000,
        )
        hub.add_repo("tester/SmolChat-GGUF", tiny, downloads=8_400, likes=41, parameters=5_100_000)
        hub.add_repo(
            "meta-llama/Llama-3.3-70B-Instruct-GGUF",
            big,
            downloads=190_000,
            likes=980,
            parameters=70_550_000_000,
            gated=True,
            token="x",
        )
        head = Head(persist=False, state_dir=tmp / "head")
        cfg = HubConfig(
            endpoint=hub.endpoint,
            cache_dir=tmp / "cache",
            own_folder=tmp / "own",
            state_dir=tmp / "state",
            offline=False,
            margin_bytes=0,
        )
        head.models = ModelHub(cfg, cluster=lambda: Cluster(rig, 8192))
        screen = ModelsScreen(head)
        screen.resize(1100, 760)
        screen.show()
        screen.query.setText("llama 70b")
        screen.search()
        wait(lambda: screen.results.rowCount() >= 2)
        screen.grab().save(str(OUT / "models-search.png"))
        screen.query.setText("smolchat")
        screen.search()
        wait(lambda: screen.results.rowCount() == 1)
        screen.results.selectRow(0)
        wait(lambda: screen._recommended != "")
        screen.grab().save(str(OUT / "models-quants.png"))
        hub.repos["tester/SmolChat-GGUF"].rate = 1_200_000
        screen.quants_table.selectRow(
            next(i for i, q in enumerate(screen.quants) if q.tag == "F16")
        )
        screen.download_selected()
        wait(lambda: any("/s" in r.text.text() for r in screen.downloads.rows.values()))
        wait(lambda: any(r.bar.value() > 400 for r in screen.downloads.rows.values()), 8)
        screen.grab().save(str(OUT / "models-downloading.png"))
        hub.repos["tester/SmolChat-GGUF"].rate = 0
        wait(lambda: all(r.bar.value() == 1000 for r in screen.downloads.rows.values()), 30)
        screen.tabs.setCurrentIndex(1)
        wait(lambda: screen.library_table.rowCount() >= 1)
        screen.library_table.selectRow(0)
        app.processEvents()
        screen.grab().save(str(OUT / "models-library.png"))
        screen.close()
        head.close()
    print("wrote", *(p.name for p in sorted(OUT.glob("models-*.png"))))


if __name__ == "__main__":
    main()

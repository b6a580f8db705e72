"""Screenshots of the Models screen against a local stand-in of the hub (no internet):
search results, a 70B repo's quants with fit badges on a recorded rig (two RTX 3060s), a
download in progress, the same download waiting for a lost network, the library, the hub
access tab (token, mirror).

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

    from layerlab.core.demo_model import DEMO_FILE, demo_model_path
    from layerlab.core.devices.rig import load_rig
    from layerlab.core.head import Head
    from layerlab.core.hub.config import HubConfig
    from layerlab.core.hub.downloads import NetworkWait
    from layerlab.core.hub.hub import Cluster, ModelHub
    from layerlab.core.planner.devices import devices_from_machine
    from layerlab.ui.models import ModelsScreen
    from tests.support.hub_standin import HubStandIn
    from tests.support.synthetic_gguf import LLAMA_70B, ModelSpec, Q, write_model

    app = QApplication.instance() or QApplication(sys.argv)
    tmp = Path(tempfile.mkdtemp(prefix="models-shots-"))
    # the download: the bundled demo model (SmolLM2-135M, 94 MiB), a real model end to end
    smol = tmp / "smol"
    smol.mkdir()
    (smol / DEMO_FILE).symlink_to(demo_model_path())
    big = tmp / "big"
    big.mkdir()
    # header-only 70Bs (sparse files) with each quant's real tensor types, so each size and
    # fit is what that quant of a 70B has
    for tag, t in [
        ("IQ2_XS", Q.IQ2_XS),
        ("Q2_K", Q.Q2_K),
        ("Q3_K_M", Q.Q3_K),
        ("Q4_K_M", Q.Q4_K),
        ("Q5_K_M", Q.Q5_K),
        ("Q6_K", Q.Q6_K),
        ("Q8_0", Q.Q8_0),
    ]:
        spec70 = ModelSpec(**{**LLAMA_70B.__dict__, "weight_type": t})
        write_model(big / f"Llama-3.3-70B-Instruct-{tag}.gguf", spec70, sparse=True)
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
        hub.add_repo(
            "demo/SmolLM2-135M-Instruct-GGUF",
            smol,
            downloads=8_400,
            likes=41,
            parameters=134_520_000,
        )
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
        head.models = ModelHub(
            cfg,
            cluster=lambda: Cluster(rig, 8192),
            # the lost network's shot comes in seconds, not after a minute of backoff
            retry_delays_s=(0.3,),
            network_wait=NetworkWait(first_s=0.5, max_s=1.0, timeout_s=1.0),
        )
        screen = ModelsScreen(head)
        screen.resize(1100, 760)
        screen.show()
        screen.query.setText("llama 70b")
        screen.search()
        wait(lambda: screen.results.rowCount() >= 2)
        screen.grab().save(str(OUT / "models-search.png"))
        # a 70B on two RTX 3060s (a recorded rig) at 8k context: IQ2_XS fits on the GPUs,
        # the middle quants spill onto the CPU, Q6_K and Q8_0 are too large
        split = screen.results.parentWidget()  # room for all seven quants
        sizes = split.sizes()
        split.setSizes([110, 330, max(60, sum(sizes) - 440)])
        screen.results.selectRow(0)
        wait(lambda: screen._recommended != "")
        app.processEvents()
        screen.grab().save(str(OUT / "models-quants.png"))
        split.setSizes(sizes)
        screen.query.setText("smollm2")
        screen.search()
        wait(lambda: screen.results.rowCount() == 1)
        screen.results.clearSelection()  # row 0 again: a new selection opens it
        screen.results.selectRow(0)
        wait(lambda: any(q.tag == "Q4_1" for q in screen.quants) and screen._recommended != "")
        hub.repos["demo/SmolLM2-135M-Instruct-GGUF"].rate = 9_000_000
        screen.quants_table.selectRow(
            next(i for i, q in enumerate(screen.quants) if q.tag == "Q4_1")
        )
        screen.download_selected()
        wait(lambda: any("/s" in r.text.text() for r in screen.downloads.rows.values()))
        wait(lambda: any(r.bar.value() > 400 for r in screen.downloads.rows.values()), 8)
        screen.grab().save(str(OUT / "models-downloading.png"))
        hub.refuse_connections()  # the network goes away mid-file
        wait(
            lambda: any(
                "Waiting for the network" in r.text.text() for r in screen.downloads.rows.values()
            ),
            30,
        )
        wait(lambda: False, 0.3)  # the row's second line settles into the layout
        screen.grab().save(str(OUT / "models-waiting-network.png"))
        hub.repos["demo/SmolLM2-135M-Instruct-GGUF"].rate = 0
        hub.answer_again()  # and comes back: the download goes on by itself
        wait(lambda: "in the Library" in screen.status.text(), 30)
        screen.tabs.setCurrentIndex(1)
        wait(lambda: screen.library_table.rowCount() >= 1)
        screen.library_table.selectRow(0)
        app.processEvents()
        screen.grab().save(str(OUT / "models-library.png"))
        screen.tabs.setCurrentIndex(2)  # the token, the hub's address (a mirror)
        wait(lambda: "token" in screen.token_state.text().lower())
        app.processEvents()
        screen.grab().save(str(OUT / "models-hub-access.png"))
        screen.close()
        head.close()
    print("wrote", *(p.name for p in sorted(OUT.glob("models-*.png"))))


if __name__ == "__main__":
    main()

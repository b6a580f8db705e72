"""Time from opening a repo with 20 quants to all fit badges, 50 ms added per request.

.venv/bin/python bench/hub_badges.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.support.hub_standin import HubStandIn
from tests.support.synthetic_gguf import ModelSpec, Q, write_model

TAGS = [
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_0",
    "Q4_1",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_0",
    "Q5_1",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
    "Q8_0",
    "IQ2_XS",
    "IQ3_XS",
    "IQ4_XS",
    "IQ4_NL",
    "F16",
    "BF16",
]


def main() -> None:
    from layerlab.core.devices.rig import load_rig
    from layerlab.core.hub.config import HubConfig
    from layerlab.core.hub.hub import Cluster, ModelHub
    from layerlab.core.planner.devices import devices_from_machine

    tmp = Path(tempfile.mkdtemp(prefix="badges-"))
    one = write_model(tmp / "one.gguf", ModelSpec(n_layer=32, n_embd=256, weight_type=Q.Q4_0))
    repo = tmp / "repo"
    repo.mkdir()
    for t in TAGS:
        shutil.copy(one, repo / f"Model-{t}.gguf")
    rig = Path(__file__).parents[1] / "tests/fixtures/rigs/2x3060.json"
    cluster = Cluster(devices_from_machine(load_rig(rig)), 4096)
    with HubStandIn(latency_s=0.050) as hub:
        hub.add_repo("bench/Model-GGUF", repo)
        mh = ModelHub(
            HubConfig(
                endpoint=hub.endpoint, cache_dir=tmp / "c", state_dir=tmp / "s", offline=False
            )
        )
        times = []
        for _ in range(3):
            t = time.perf_counter()
            quants = mh.quants("bench/Model-GGUF")
            badges = mh.badges("bench/Model-GGUF", quants, cluster=cluster)
            times.append(time.perf_counter() - t)
            assert len(badges) == 20
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), "?"
        )
        print(f"CPU: {cpu}")
        print(
            f"20 quants, 50 ms per request: open repo -> all badges {sorted(times)[1]:.2f} s "
            f"(median of 3; target 2 s); {len(hub.requests) / 3:.0f} requests per opening"
        )


if __name__ == "__main__":
    main()

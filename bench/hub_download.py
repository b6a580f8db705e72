"""Download throughput through LayerLab vs huggingface_hub's own hf_hub_download, same file,
same stand-in, one run; and how fast each way of stopping really stops the transfer.

    .venv/bin/python bench/hub_download.py [--mb 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

import contextlib

from tests.support.hub_standin import HubStandIn


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln), "?")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from huggingface_hub import hf_hub_download

    from layerlab.core.hub.config import HubConfig, no_telemetry
    from layerlab.core.hub.hub import ModelHub
    from layerlab.core.hub.quants import HubFileEntry

    no_telemetry()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    repo = tmp / "repo"
    repo.mkdir()
    blob = repo / "Big-Q4_K_M.gguf"
    with blob.open("wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(args.mb):
            f.write(chunk)
    with HubStandIn() as hub:
        r = hub.add_repo("bench/Big-GGUF", repo)
        sha = r.sha256(blob)
        entry = HubFileEntry(blob.name, blob.stat().st_size, sha)
        ours, theirs = [], []
        for i in range(args.rounds):
            cache = tmp / f"hf-{i}"
            t = time.perf_counter()
            hf_hub_download("bench/Big-GGUF", blob.name, cache_dir=cache, endpoint=hub.endpoint)
            theirs.append(entry.size / (time.perf_counter() - t))
            cfg = HubConfig(
                endpoint=hub.endpoint,
                cache_dir=tmp / f"ll-{i}",
                state_dir=tmp / f"st-{i}",
                offline=False,
                margin_bytes=0,
            )
            mh = ModelHub(cfg)
            t = time.perf_counter()
            item = mh.downloads.add("bench/Big-GGUF", "Q4_K_M", [entry])
            done = mh.downloads.wait(item.id)
            ours.append(entry.size / (time.perf_counter() - t))
            assert done.state == "done", done.note
            mh.close()
        o, h = sorted(ours)[len(ours) // 2], sorted(theirs)[len(theirs) // 2]
        print(f"CPU: {cpu()}")
        print(f"file {args.mb} MiB, {args.rounds} rounds, medians (LayerLab includes its sha256)")
        print(f"hf_hub_download : {h / 2**20:8.1f} MiB/s")
        print(f"LayerLab        : {o / 2**20:8.1f} MiB/s")
        print(f"ratio LayerLab / hf_hub_download: {o / h:.2f} (target >= 0.95)")

        # stopping: a hook that raises (in-process) vs ending the transfer's process
        r.rate = 20 * 2**20
        stop = threading.Event()

        class Raising:
            def __init__(self, *a, **kw):
                pass

            def update(self, n=1):
                if stop.is_set():
                    raise KeyboardInterrupt("stop")

            def close(self):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *e):
                pass

        def hooked():
            with contextlib.suppress(BaseException):
                hf_hub_download(
                    "bench/Big-GGUF",
                    blob.name,
                    cache_dir=tmp / "hook",
                    endpoint=hub.endpoint,
                    tqdm_class=Raising,
                )

        th = threading.Thread(target=hooked)
        th.start()
        time.sleep(1.0)
        sent = hub.bytes_sent
        t = time.perf_counter()
        stop.set()
        th.join()
        hook_s, hook_b = time.perf_counter() - t, hub.bytes_sent - sent
        cfg = HubConfig(
            endpoint=hub.endpoint,
            cache_dir=tmp / "kill",
            state_dir=tmp / "stk",
            offline=False,
            margin_bytes=0,
        )
        mh = ModelHub(cfg)
        item = mh.downloads.add("bench/Big-GGUF", "Q4_K_M", [entry])
        time.sleep(1.5)
        sent = hub.bytes_sent
        t = time.perf_counter()
        mh.downloads.pause(item.id)
        kill_s = time.perf_counter() - t
        time.sleep(0.5)
        kill_b = hub.bytes_sent - sent
        mh.close()
        print("stopping a 20 MiB/s transfer:")
        print(
            f"  raise from the tqdm hook : {hook_s * 1000:6.0f} ms, "
            f"{hook_b / 2**20:5.1f} MiB more sent"
        )
        print(
            f"  end the transfer process : {kill_s * 1000:6.0f} ms, "
            f"{kill_b / 2**20:5.1f} MiB more sent"
        )


if __name__ == "__main__":
    main()

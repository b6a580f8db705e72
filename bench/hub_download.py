"""Download throughput through LayerLab vs huggingface_hub's own hf_hub_download, same file,
same stand-in, one run; and how fast each way of stopping really stops the transfer.

    .venv/bin/python bench/hub_download.py [--mb 300] [--rounds 5]

LayerLab's time runs from Download to a verified file in the cache; hf_hub_download's from
its call to its return. The stand-in serves from a process of its own (a real hub is another
machine; in this process it would share the GIL with hf_hub_download but not with LayerLab's
transfer process). The ways are interleaved round by round, in an order that rotates, and
each ratio is the median of the rounds' ratios, so a load spike from elsewhere on the machine
hits both sides of a ratio. The CPU seconds per GiB (client side: this process plus its
children) depend far less on the load than the speeds do.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.hub_standin import HubStandIn  # noqa: E402

WAYS = {
    "hf": "hf_hub_download (no sha256 check)",
    "ll": "LayerLab, repo opened first (sha256 checked while writing)",
    "ll_cold": "LayerLab, nothing started before Download",
    "hf_sha": "hf_hub_download, then sha256 of the file",
    "ll_nosha": "LayerLab with the sha256 check off (comparison only)",
}
RATIOS = {
    "LayerLab / hf_hub_download (target >= 0.95)": ("ll", "hf"),
    "both checking sha256 (LayerLab / hf + sha256 after)": ("ll", "hf_sha"),
    "neither checking (LayerLab no sha256 / hf)": ("ll_nosha", "hf"),
    "LayerLab from a cold start / hf": ("ll_cold", "hf"),
}
SERVE = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.support.hub_standin import HubStandIn
with HubStandIn() as hub:
    hub.add_repo("bench/Big-GGUF", sys.argv[2])
    print(hub.endpoint, flush=True)
    sys.stdin.read()
"""


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln), "?")


def cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
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
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    entry = HubFileEntry(blob.name, blob.stat().st_size, sha)
    unchecked = HubFileEntry(blob.name, blob.stat().st_size, "")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(ROOT), str(repo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    endpoint = server.stdout.readline().strip()
    secs: dict[str, list[float]] = {k: [] for k in WAYS}
    cpus: dict[str, list[float]] = {k: [] for k in WAYS}
    n = 0

    def ours(e: HubFileEntry, warm: bool) -> tuple[float, float]:
        nonlocal n
        n += 1
        cfg = HubConfig(
            endpoint=endpoint,
            cache_dir=tmp / f"cache-{n}",
            state_dir=tmp / f"state-{n}",
            offline=False,
            margin_bytes=0,
        )
        mh = ModelHub(cfg)
        if warm:
            # what opening the repo on the Models screen (or `models pull` listing its
            # files) does: the transfer's Python starts while the person looks
            prepare = getattr(mh.downloads, "prepare", None)  # absent before it existed
            if prepare is not None:
                prepare()
            time.sleep(1.5)
        c, t = cpu_s(), time.perf_counter()
        item = mh.downloads.add("bench/Big-GGUF", "Q4_K_M", [e])
        done = mh.downloads.wait(item.id)
        took = time.perf_counter() - t
        assert done.state == "done", done.note
        mh.close()
        return took, cpu_s() - c

    def theirs(check: bool) -> tuple[float, float]:
        nonlocal n
        n += 1
        c, t = cpu_s(), time.perf_counter()
        path = hf_hub_download(
            "bench/Big-GGUF", blob.name, cache_dir=tmp / f"cache-{n}", endpoint=endpoint
        )
        if check:  # what it takes to know the file is the hub's: hash it after
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(4 << 20):
                    h.update(block)
            assert h.hexdigest() == sha
        return time.perf_counter() - t, cpu_s() - c

    try:
        ways = list(WAYS)
        for r in range(args.rounds):
            # each round starts one way later: the disk's write-back (a few GB per round)
            # and the page cache must not favour whichever way comes first
            for k in ways[r % len(ways) :] + ways[: r % len(ways)]:
                if k.startswith("hf"):
                    s, c = theirs(k == "hf_sha")
                else:
                    s, c = ours(unchecked if k == "ll_nosha" else entry, k != "ll_cold")
                secs[k].append(s)
                cpus[k].append(c)
            for p in tmp.glob("cache-*"):
                shutil.rmtree(p, ignore_errors=True)  # keep the disk from filling
    finally:
        server.stdin.close()
        server.wait(10)

    def median(xs: list[float]) -> float:
        return sorted(xs)[len(xs) // 2]

    gib = entry.size / 2**30
    print(f"CPU: {cpu()}, {os.cpu_count()} cores (the stand-in and the client share them)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"file {args.mb} MiB from the stand-in on loopback, {args.rounds} rounds, medians")
    for k, label in WAYS.items():
        print(
            f"  {label:<58}: {entry.size / median(secs[k]) / 2**20:7.1f} MiB/s, "
            f"{median(cpus[k]) / gib:5.2f} CPU s/GiB"
        )
    print("ratios of speed (median of each round's ratio):")
    for label, (a, b) in RATIOS.items():
        r = median([tb / ta for ta, tb in zip(secs[a], secs[b], strict=True)])
        print(f"  {label:<52}: {r:.2f}")

    with HubStandIn() as hub:
        r = hub.add_repo("bench/Big-GGUF", repo)
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

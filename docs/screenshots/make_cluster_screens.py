r"""Screenshots of the cluster widgets, against real workers on loopback only:

- cluster-share-switch*.png, cluster-pairing-*.png: the share switch showing a real pairing
  code, and the pairing dialog with a wrong and then the right code;
- workers-paired.png: the Workers list after an answer generated over a paired worker (its
  link, RTT, throughput and wait per token) and a plain one, with an unpaired worker found on
  "this network" (mDNS kept on loopback).

Run under Xvfb from the repository root:
    xvfb-run -a -s "-screen 0 1600x1000x24" \
        .venv/bin/python docs/screenshots/make_cluster_screens.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from PySide6.QtWidgets import QApplication

from layerlab.core.cluster.head_links import HeadLinks
from layerlab.core.cluster.identity import TrustStore, load_or_create_identity
from layerlab.core.demo_model import demo_model_path
from layerlab.core.engine.supervisor import Failed, Ready
from layerlab.core.head import Head
from layerlab.core.load_plan import DeviceRef, LoadPlan
from layerlab.ui.chat.chat_stream import ChatStream
from layerlab.ui.cluster.pairing_dialog import PairingDialog
from layerlab.ui.cluster.share_process import ShareProcess
from layerlab.ui.cluster.share_switch import ShareSwitch
from layerlab.ui.head_bridge import HeadBridge
from layerlab.ui.workers.workers_panel import WorkersPanel

OUT = Path(__file__).parent


def pump_until(app: QApplication, cond, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what or "condition")
        app.processEvents()
        time.sleep(0.01)


def pump(app: QApplication, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def share_and_pair_shots(app: QApplication, tmp: Path, free_port_pair) -> None:
    """The share switch with its code, and the pairing dialog (wrong code, then paired)."""
    link_port = free_port_pair()
    from tests.cluster.conftest import share_switch_args

    proc = ShareProcess(share_switch_args(tmp / "worker", link_port))
    switch = ShareSwitch(proc)
    dialog = None
    try:
        switch.setWindowTitle("LayerLab: share")
        switch.resize(440, 260)
        switch.show()
        switch.switch.setChecked(True)
        pump_until(app, lambda: len(switch.code.text()) == 7, what="a pairing code")
        pump(app, 0.3)
        switch.grab().save(str(OUT / "cluster-share-switch.png"))
        head = load_or_create_identity(tmp / "head", "desk")
        dialog = PairingDialog(
            head,
            TrustStore(tmp / "head"),
            address=f"127.0.0.1:{link_port}",
            worker_name="bench-box",
            fingerprint=load_or_create_identity(tmp / "worker").fingerprint,
        )
        dialog.resize(460, 260)
        dialog.show()
        dialog.code.setText("000000" if switch.code.text() != "000-000" else "111111")
        dialog.pair_button.click()
        pump_until(app, lambda: "did not match" in dialog.message.text(), 10, "a refusal")
        dialog.grab().save(str(OUT / "cluster-pairing-wrong-code.png"))
        dialog.code.setText(switch.code.text().replace("-", ""))
        dialog.pair_button.click()
        pump_until(app, lambda: dialog.message.text().startswith("Paired"), 10, "pairing")
        pump_until(app, lambda: switch.status.text().startswith("Paired"), 5, "the switch")
        dialog.grab().save(str(OUT / "cluster-pairing-done.png"))
        switch.grab().save(str(OUT / "cluster-share-switch-paired.png"))
    finally:
        if dialog is not None:
            dialog.done(0)
        proc.stop()
        switch.close()


def workers_paired_shot(app: QApplication, tmp: Path) -> None:
    """An answer over a paired and a plain worker; the Workers list afterwards."""
    from tests.cluster.conftest import SharingWorker
    from tests.conftest import WorkerProcess, free_port_pair

    started: list = []
    panel = controller = None
    try:
        paired = SharingWorker(tmp, "bench-box", share_on=f"127.0.0.1:{free_port_pair()}")
        started.append(paired)
        # Announced on loopback and not paired: what "On this network" lists.
        found = SharingWorker(
            tmp, "rack-box", share_on=f"127.0.0.1:{free_port_pair()}", announce=True
        )
        started.append(found)
        plain = WorkerProcess(free_port_pair(), tmp)
        started.append(plain)

        head = Head(
            persist=False,
            automatic=False,
            links=HeadLinks(tmp / "panel-head", name="desk", watch_retry_s=0.3),
        )
        panel = WorkersPanel(HeadBridge(head))
        head.links.pair(paired.address, paired.code, paired.fingerprint)
        head.add_worker(paired.address)
        head.add_worker(plain.endpoint)
        panel.resize(720, 380)
        panel.show()  # starts discovery, on 127.0.0.1 only (LAYERLAB_DISCOVERY)
        pump_until(
            app, lambda: {paired.address, plain.endpoint} <= set(head.results), what="both probes"
        )

        controller = head
        controller.load(
            LoadPlan(
                str(demo_model_path()),
                n_ctx=1024,
                n_threads=1,
                devices=[DeviceRef.rpc(paired.address), DeviceRef.rpc(plain.endpoint)],
                tensor_split=[1, 1],
            )
        )
        pump_until(app, lambda: isinstance(controller.state, Ready | Failed), 90, "the load")
        if not isinstance(controller.state, Ready):
            raise RuntimeError(f"load failed: {controller.state}")

        stream = ChatStream(
            controller.client(),
            [{"role": "user", "content": "Tell me about the sea."}],
            {"temperature": 0, "seed": 1, "max_tokens": 64},
            panel,
        )
        done: list = []
        stream.finished.connect(done.append)
        stream.failed.connect(done.append)
        panel.follow_answer(stream)
        stream.start()
        pump_until(app, lambda: bool(done), 90, "the answer")
        stream.wait(5)
        if isinstance(done[0], str):
            raise RuntimeError(f"answer failed: {done[0]}")

        def found_rack_box() -> bool:
            return any(
                panel.found_list.item(i).text().startswith("rack-box — ")
                for i in range(panel.found_list.count())
            )

        pump_until(
            app,
            lambda: (
                "ms/token" in panel.list.item(0).text()
                and "B/s" in panel.list.item(0).text()
                and "paired workers only" in panel.list.item(1).text()
                and found_rack_box()
            ),
            20,
            "the rows after the answer",
        )
        panel.list.clearSelection()
        panel.found_list.setCurrentItem(None)
        pump(app, 0.3)
        panel.grab().save(str(OUT / "workers-paired.png"))
        for i in range(panel.list.count()):
            print(panel.list.item(i).text())
        for i in range(panel.found_list.count()):
            print(panel.found_list.item(i).text())
    finally:
        if controller is not None:
            controller.close()  # the head: engine, mDNS and the links
        if panel is not None:
            panel.close()
        for w in started:
            w.stop()


def main() -> None:
    os.environ["LAYERLAB_DISCOVERY"] = "127.0.0.1"  # mDNS stays on loopback
    app = QApplication(sys.argv)  # before tests.conftest, which defaults Qt to offscreen
    from tests.conftest import free_port_pair

    tmp = Path(tempfile.mkdtemp(prefix="layerlab-shots-"))
    share_and_pair_shots(app, tmp, free_port_pair)
    workers_paired_shot(app, tmp)


if __name__ == "__main__":
    main()

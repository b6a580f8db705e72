"""The main window: it only arranges the panes and wires them to the head (core/head)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QMainWindow,
    QScrollArea,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.engine.supervisor import EngineState, Failed, Ready, Stopped
from layerlab.core.head import Head, WorkerBack
from layerlab.core.load_plan import LoadPlan, default_plan
from layerlab.ui.api.api_panel import ApiPanel
from layerlab.ui.bench.screen import BenchScreen
from layerlab.ui.chat.chat_pane import ChatPane
from layerlab.ui.chat.sidebar import ConversationSidebar
from layerlab.ui.cluster.share_process import ShareProcess
from layerlab.ui.cluster.share_switch import ShareSwitch
from layerlab.ui.devices.feed import DeviceFeed
from layerlab.ui.devices.panel import DevicesPanel
from layerlab.ui.head_bridge import HeadBridge
from layerlab.ui.layer_map.panel import LayerMapPanel
from layerlab.ui.load_bar import LoadBar
from layerlab.ui.memory import SETTLE_AFTER_MS, settle_after_start
from layerlab.ui.models import ModelsScreen
from layerlab.ui.status.answers_readout import AnswersReadout
from layerlab.ui.status.model_toolbar import ModelToolbar
from layerlab.ui.wiring.engine_views import LoadedModelView
from layerlab.ui.wiring.plan_feed import PlanFeeder
from layerlab.ui.wiring.side_tabs import SideTabs
from layerlab.ui.workers.workers_panel import WorkersPanel


def _scrolled(page: QWidget) -> QScrollArea:
    """A page wider than a 1280-px window scrolls instead of widening the window."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(page)
    return area


class MainWindow(QMainWindow):
    def __init__(self, head: Head, model_path: Path, model_name: str):
        super().__init__()
        self.setWindowTitle("LayerLab")
        self.head = head
        self.bridge = HeadBridge(head, self)
        self.model_path = model_path
        self.model_name = model_name

        self.chat = ChatPane(head)  # kept in the head's chat store
        self.sidebar = ConversationSidebar(head)
        self.chat.attach_sidebar(self.sidebar)
        self.load_bar = LoadBar()
        self.workers = WorkersPanel(self.bridge)
        # the gauges read the head's one poller per worker; the tabs start sampling when shown
        self.devices = DevicesPanel(feed=DeviceFeed(worker_feed=head.feed), auto_start=False)
        self.layer_map = LayerMapPanel()
        self.layer_map.model.follow_calibration(head.bench)  # forecasts learn without a restart
        self.share = ShareSwitch(ShareProcess(parent=self))
        self.api = ApiPanel(self.bridge)  # other apps on this model: off until switched on
        self.tabs = SideTabs(self.workers, self.devices, self.layer_map, self.share, self.api)
        self.toolbar = ModelToolbar(self)
        self.answers = AnswersReadout(head)  # "2 answering · 3 waiting", while any are
        self.toolbar.insertWidget(self.toolbar.cluster, self.answers)
        self.placement = self.toolbar.placement
        self.throughput = self.toolbar.throughput
        self.plan_feed = PlanFeeder(self.layer_map, self.bridge, self)
        self.loaded_view = LoadedModelView(self.devices, self.layer_map, self)
        # ui/memory.py's one collection after the start (ui/app.py starts it once shown)
        self.settle = QTimer(self, singleShot=True, interval=SETTLE_AFTER_MS)
        self.settle.timeout.connect(settle_after_start)

        # The conversation in the middle; the cluster (model, workers, devices, layer map,
        # sharing) in a right-hand panel that can be hidden and keeps its width.
        self.cluster_panel = QWidget()
        side_layout = QVBoxLayout(self.cluster_panel)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.load_bar)
        side_layout.addWidget(self.tabs, 1)

        # The middle shows one page at a time: the conversation, or the models.
        self.models = ModelsScreen(head)
        self.bench = BenchScreen(head)
        self.pages = QStackedWidget()
        self._page_of = {"chat": self.chat, "models": self.models, "bench": _scrolled(self.bench)}
        for page in self._page_of.values():
            self.pages.addWidget(page)

        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.addWidget(self.sidebar)
        self.split.addWidget(self.pages)
        self.split.addWidget(self.cluster_panel)
        self.split.setStretchFactor(0, 0)
        self.split.setStretchFactor(1, 1)
        self.split.setStretchFactor(2, 0)
        self.split.setChildrenCollapsible(False)
        self.setCentralWidget(self.split)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.toolbar)
        self.resize(1280, 800)
        self._sized = False  # the splitter gets its sizes once the window has its own
        self.toolbar.cluster.setChecked(head.settings.cluster_panel_open)
        self.cluster_panel.setVisible(head.settings.cluster_panel_open)
        self.toolbar.clusterToggled.connect(self._show_cluster)
        self.toolbar.pageChosen.connect(self.show_page)
        self.models.loadRequested.connect(self._open_in_layer_map)
        self.bench.planChosen.connect(self._apply_bench_plan)
        self.toolbar.set_model_name(model_name)

        self.load_bar.set_model_name(model_name)
        self.load_bar.set_automatic(head.policy.automatic)
        self.devices.set_workers(head.enabled_addresses())
        self.layer_map.model.update(n_ctx=head.settings.n_ctx)  # until the person changes it
        self.plan_feed.probe_this_machine()
        self.plan_feed.set_model(model_path)
        head.check_all()

        self.bridge.stateChanged.connect(self._on_state)
        self.split.splitterMoved.connect(lambda _pos, _i: self._keep_cluster_width())
        self.bridge.notice.connect(lambda text: self.statusBar().showMessage(text, 10000))
        self.bridge.workerBack.connect(self._offer_worker)
        self.load_bar.loadRequested.connect(self.load)
        self.load_bar.unloadRequested.connect(head.unload)
        self.load_bar.reloadWithoutRequested.connect(head.reload_without_lost)
        self.load_bar.useAgainRequested.connect(head.use_worker_again)
        self.load_bar.automaticChanged.connect(head.set_reload_automatically)
        self.load_bar.modelChosen.connect(self._choose_model)
        self.chat.ratesChanged.connect(self.throughput.show_rates)
        self.chat.answerStarted.connect(self.workers.follow_answer)  # wait per token
        self.bridge.workersChanged.connect(
            lambda: self.devices.set_workers(head.enabled_addresses())
        )
        for problem in head.settings.problems:
            self.statusBar().showMessage(problem, 10000)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._sized:  # before the first show the splitter does not know its width
            self._sized = True
            width = min(self.head.settings.cluster_panel_width, self.width() * 2 // 5)
            sidebar = 200
            self.split.setSizes([sidebar, max(self.width() - width - sidebar, 400), width])

    @property
    def controller(self) -> HeadBridge:
        return self.bridge

    def load(self) -> None:
        """Load what the layer map shows (once it knows the model, this machine and the
        workers); llama.cpp's default split only when the map has no plan."""
        self.load_bar.say("Waiting for the model's plan and the workers' answers…")
        self.plan_feed.request_plan(self._load_plan)

    def _load_plan(self, plan: LoadPlan | None) -> None:
        if plan is None:
            counts = {}
            for address in self.head.enabled_addresses():
                result = self.head.results.get(address)
                counts[address] = len(result.devices) if result and result.ok else 1
            plan = default_plan(str(self.model_path), counts, self.head.settings.n_ctx)
        self.head.load(plan.model_copy(update={"model_name": self.model_name}))

    def show_page(self, key: str) -> None:
        self.pages.setCurrentWidget(self._page_of[key])
        self.sidebar.setVisible(key == "chat")  # the conversations belong to the chat
        self.toolbar.choose_page(key)

    def _open_in_layer_map(self, path: str) -> None:
        """The library's Load: the layer map plans that model; Load in the panel loads it."""
        self._set_model(path)
        self._show_cluster(True)
        self.toolbar.cluster.setChecked(True)
        self.tabs.setCurrentWidget(self.layer_map)
        self.load_bar.say(f"{self.model_name}: check the layer map, then press Load.")

    def _apply_bench_plan(self, plan: LoadPlan) -> None:
        """Apply fastest: the bench's winner becomes what the layer map shows, so it loads."""
        self.layer_map.model.apply_plan(plan)
        self._show_cluster(True)
        self.toolbar.cluster.setChecked(True)
        self.tabs.setCurrentWidget(self.layer_map)
        self.load_bar.say("The fastest measured split is in the layer map; press Load.")

    def _show_cluster(self, shown: bool) -> None:
        self.cluster_panel.setVisible(shown)
        self.head.settings.cluster_panel_open = shown

    def _keep_cluster_width(self) -> None:
        if self.cluster_panel.isVisible():
            self.head.settings.cluster_panel_width = max(200, self.split.sizes()[2])

    def _offer_worker(self, back: WorkerBack) -> None:
        self.load_bar.offer_worker(back.address, back.label)

    def _set_model(self, path: str) -> None:
        self.model_path = Path(path)
        self.model_name = Path(path).name
        self.head.set_model_path(path)
        self.load_bar.set_model_name(self.model_name)
        self.toolbar.set_model_name(self.model_name)
        self.plan_feed.set_model(path)  # the layer map plans it

    def _choose_model(self, path: str) -> None:
        self._set_model(path)
        self.load()  # waits for the new model's plan

    def _on_state(self, state: EngineState) -> None:
        self.load_bar.show_state(state)
        self.toolbar.show_state(state)
        self.loaded_view.show_state(state)
        if isinstance(state, Ready):
            self.chat.set_client(self.head.client())
        elif isinstance(state, Failed | Stopped):
            self.chat.set_client(None)
        if isinstance(state, Failed) and state.lost_workers:
            self.head.check_all()  # show the lost worker as it is now

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settle.stop()
        self.head.save_settings()
        self.chat.shutdown()
        self.models.close()
        self.plan_feed.close()
        self.devices.stop_sampling()
        self.share.process.stop()
        super().closeEvent(event)

"""ModelsScreen: search -> a repo's quants with fit badges -> download -> the library -> Load.

A thin view on the head's models hub (core/hub) through ModelsBridge: no hub rule lives here.
Nothing touches the network until the person searches or opens a repo.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.units import format_bytes
from layerlab.ui.models.bridge import ModelsBridge
from layerlab.ui.models.downloads_view import DownloadsView

BADGE_COLOURS = {
    "gpu": "#1b7f3b",
    "split": "#1b6f7f",
    "cpu_offload": "#9a6b00",
    "cpu": "#9a6b00",
    "too_large": "#a12a2a",
    "unknown": "#666666",
}


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().hide()
    t.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for i in range(1, len(headers)):
        t.horizontalHeader().setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
    return t


class _quiet:
    """Set a widget's value without its signals (showing a state is not the person's act)."""

    def __init__(self, widget: QWidget):
        self._w = widget

    def __enter__(self) -> None:
        self._old = self._w.blockSignals(True)

    def __exit__(self, *exc) -> None:
        self._w.blockSignals(self._old)


def _cell(text: str, right: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    if right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class ModelsScreen(QWidget):
    loadRequested = Signal(str)  # the path of the model file to load

    def __init__(self, head, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.bridge = ModelsBridge(head.models, self)
        self.repo_id = ""
        self.quants: list = []
        self.library: list = []
        self._recommended = ""

        # -- find ------
        self.query = QLineEdit()
        self.query.setPlaceholderText(
            "Search Hugging Face for GGUF models, or paste owner/repo or a link"
        )
        self.search_button = QPushButton("Search")
        self.results = _table(
            ["Repository", "Downloads", "Likes", "Updated", "Parameters", "Access"]
        )
        self.quant_title = QLabel("Open a repository to see its quants and whether each fits.")
        self.quants_table = _table(["Quant", "Size", "Fit on this cluster", "Speed", ""])
        self.download_button = QPushButton("Download")
        self.download_button.setEnabled(False)
        self.downloads = DownloadsView(self.bridge)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.downloads)
        self.status = QLabel()
        self.status.setWordWrap(True)

        self.offline_box = QCheckBox("Offline")
        self.offline_box.setToolTip(
            "No network at all: searching and downloading stop, the library still works."
        )
        row = QHBoxLayout()
        row.addWidget(self.query, 1)
        row.addWidget(self.search_button)
        row.addWidget(self.offline_box)
        quant_box = QWidget()
        ql = QVBoxLayout(quant_box)
        ql.setContentsMargins(0, 0, 0, 0)
        ql.addWidget(self.quant_title)
        ql.addWidget(self.quants_table, 1)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.download_button)
        ql.addLayout(buttons)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.results)
        split.addWidget(quant_box)
        split.addWidget(scroll)
        split.setSizes([260, 260, 140])
        find = QWidget()
        fl = QVBoxLayout(find)
        fl.addLayout(row)
        fl.addWidget(split, 1)

        # -- library ------
        self.library_table = _table(["Model", "Size", "Where", "Facts"])
        self.library_table.horizontalHeader().setSectionResizeMode(
            3, QHeaderView.ResizeMode.Stretch
        )
        self.load_button = QPushButton("Load")
        self.delete_button = QPushButton("Delete…")
        self.add_folder_button = QPushButton("Add folder…")
        self.open_button = QPushButton("Open GGUF…")
        lib = QWidget()
        ll = QVBoxLayout(lib)
        ll.addWidget(self.library_table, 1)
        lb = QHBoxLayout()
        for b in (self.open_button, self.add_folder_button):
            lb.addWidget(b)
        lb.addStretch(1)
        for b in (self.delete_button, self.load_button):
            lb.addWidget(b)
        ll.addLayout(lb)

        # -- hub access: token, mirror (the offline switch sits by the search box) ------
        self.token_edit = QLineEdit()
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_… (for gated and private repos)")
        self.save_token_button = QPushButton("Save token")
        self.forget_token_button = QPushButton("Forget token")
        self.token_state = QLabel()
        self.token_state.setWordWrap(True)
        self.endpoint_edit = QLineEdit()
        self.endpoint_edit.setPlaceholderText("https://huggingface.co, or a mirror")
        self.endpoint_button = QPushButton("Use")
        access = QWidget()
        form = QFormLayout(access)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(self.save_token_button)
        token_row.addWidget(self.forget_token_button)
        form.addRow("Hugging Face token", token_row)
        form.addRow("", self.token_state)
        endpoint_row = QHBoxLayout()
        endpoint_row.addWidget(self.endpoint_edit, 1)
        endpoint_row.addWidget(self.endpoint_button)
        form.addRow("Hub address", endpoint_row)
        help_text = QLabel(
            "A token lets LayerLab download gated and private repos you have access to "
            "(huggingface.co/settings/tokens). It is kept in the system keyring, or in a file "
            "only you can read, never in settings or logs. HF_TOKEN in the environment wins "
            "over a saved token, and HF_ENDPOINT over a saved address when LayerLab starts."
        )
        help_text.setWordWrap(True)
        form.addRow("", help_text)

        self.tabs = QTabWidget()
        self.tabs.addTab(find, "Find")
        self.tabs.addTab(lib, "Library")
        self.tabs.addTab(access, "Hub access")
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.status)

        self.search_button.clicked.connect(self.search)
        self.query.returnPressed.connect(self.search)
        self.results.itemSelectionChanged.connect(self._open_selected)
        self.quants_table.itemSelectionChanged.connect(
            lambda: self.download_button.setEnabled(self._selected_quant() is not None)
        )
        self.download_button.clicked.connect(self.download_selected)
        self.load_button.clicked.connect(self.load_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.add_folder_button.clicked.connect(self._add_folder)
        self.open_button.clicked.connect(self._open_file)
        self.tabs.currentChanged.connect(lambda i: i == 1 and self.bridge.list_library())
        b = self.bridge
        b.searched.connect(self._show_results)
        b.quantsListed.connect(self._show_quants)
        b.badge.connect(self._show_badge)
        b.badgesDone.connect(self._show_recommended)
        b.libraryListed.connect(self._show_library)
        b.downloadChanged.connect(self._download_status)
        b.problem.connect(lambda where, words: self.status.setText(words))
        b.hubSettings.connect(self._show_settings)
        self.save_token_button.clicked.connect(self._save_token)
        self.token_edit.returnPressed.connect(self._save_token)
        self.forget_token_button.clicked.connect(self.bridge.forget_token)
        self.offline_box.toggled.connect(self._offline_toggled)
        self.endpoint_button.clicked.connect(self._use_endpoint)
        self.endpoint_edit.returnPressed.connect(self._use_endpoint)
        self.bridge.list_library()  # disk only
        self.bridge.read_settings()  # disk (or the keyring) only
        self.bridge.continue_downloads()  # those the last run left unfinished

    # -- hub access ------
    def _show_settings(self, settings) -> None:
        self.settings = settings
        with _quiet(self.offline_box):
            self.offline_box.setChecked(settings.offline)
        if not self.endpoint_edit.hasFocus():
            self.endpoint_edit.setText(settings.endpoint)
        self.token_state.setText(
            f"A token is kept in {settings.token_where}."
            if settings.token_where
            else "No token: public repos only."
        )
        self.forget_token_button.setEnabled(bool(settings.token_where))
        self.search_button.setEnabled(not settings.offline)

    def _save_token(self) -> None:
        token = self.token_edit.text()
        self.token_edit.clear()  # it does not stay on screen
        if token.strip():
            self.bridge.set_token(token)
            self.status.setText("Token saved.")

    def _offline_toggled(self, on: bool) -> None:
        self.bridge.set_offline(on)
        self.status.setText(
            "Offline: LayerLab calls no network; the library still works."
            if on
            else "Online: searching and downloading work again."
        )

    def _use_endpoint(self) -> None:
        self.bridge.set_endpoint(self.endpoint_edit.text())

    # -- find ------
    def search(self) -> None:
        text = self.query.text().strip()
        if text:
            self.status.setText(f"Searching for “{text}”…")
            self.bridge.search(text)

    def _show_results(self, rows: list) -> None:
        self.rows = rows
        t = self.results
        t.setRowCount(len(rows))
        for i, r in enumerate(rows):
            t.setItem(i, 0, _cell(r.repo_id))
            t.setItem(i, 1, _cell(f"{r.downloads:,}", True))
            t.setItem(i, 2, _cell(f"{r.likes:,}", True))
            t.setItem(i, 3, _cell(r.updated_text))
            t.setItem(i, 4, _cell(r.parameters_text, True))
            t.setItem(i, 5, _cell("gated" if r.gated else "open"))
        self.status.setText(
            f"{len(rows)} GGUF repositories." if rows else "No GGUF repositories found."
        )

    def _open_selected(self) -> None:
        sel = self.results.selectionModel().selectedRows()
        if sel:
            self.open_repo(self.rows[sel[0].row()].repo_id)

    def open_repo(self, repo_id: str) -> None:
        self.repo_id = repo_id
        self.quants = []
        self.quants_table.setRowCount(0)
        self.quant_title.setText(f"{repo_id}: listing its files…")
        self.bridge.open_repo(repo_id)

    def _show_quants(self, repo_id: str, quants: list) -> None:
        if repo_id != self.repo_id:
            return
        self.quants = quants
        self._recommended = ""
        t = self.quants_table
        t.setRowCount(len(quants))
        for i, q in enumerate(quants):
            parts = f" ({q.parts} parts)" if q.parts > 1 else ""
            t.setItem(i, 0, _cell(q.tag))
            t.setItem(i, 1, _cell(format_bytes(q.size) + parts, True))
            t.setItem(i, 2, _cell("reading its header…"))
            t.setItem(i, 3, _cell(""))
            t.setItem(i, 4, _cell(""))
        n = len(quants)
        self.quant_title.setText(f"{repo_id}: {n} quant{'' if n == 1 else 's'}")

    def _show_badge(self, repo_id: str, tag: str, badge) -> None:
        if repo_id != self.repo_id:
            return
        for i, q in enumerate(self.quants):
            if q.tag == tag:
                cell = _cell(badge.text)
                cell.setForeground(QColor(BADGE_COLOURS.get(badge.kind, "#333")))
                if badge.detail:
                    cell.setToolTip(badge.detail)
                self.quants_table.setItem(i, 2, cell)
                self.quants_table.setItem(i, 3, _cell(badge.speed_text, True))

    def _show_recommended(self, repo_id: str, quant) -> None:
        if repo_id != self.repo_id or quant is None:
            return
        self._recommended = quant.tag
        for i, q in enumerate(self.quants):
            self.quants_table.setItem(i, 4, _cell("★ recommended" if q.tag == quant.tag else ""))

    def badge_text(self, tag: str) -> str:
        for i, q in enumerate(self.quants):
            if q.tag == tag:
                item = self.quants_table.item(i, 2)
                return item.text() if item else ""
        return ""

    def _selected_quant(self):
        sel = self.quants_table.selectionModel().selectedRows()
        return self.quants[sel[0].row()] if sel and self.quants else None

    def download_selected(self) -> None:
        q = self._selected_quant()
        if q is not None:
            self.bridge.download(self.repo_id, q)
            self.status.setText(f"Downloading {self.repo_id}:{q.tag}.")

    def _download_status(self, item) -> None:
        if item.state == "done":
            self.status.setText(f"{item.name} is downloaded and checked; it is in the Library.")
        elif item.state == "failed":
            self.status.setText(item.note)

    # -- library ------
    def _show_library(self, rows: list) -> None:
        self.library = [m for m, _ in rows]
        t = self.library_table
        t.setRowCount(len(rows))
        for i, (m, facts) in enumerate(rows):
            t.setItem(i, 0, _cell(m.name))
            t.setItem(i, 1, _cell(m.size_text, True))
            t.setItem(i, 2, _cell(m.where))
            t.setItem(i, 3, _cell(facts.text()))
            t.item(i, 0).setToolTip(m.path)

    def _selected_model(self):
        sel = self.library_table.selectionModel().selectedRows()
        return self.library[sel[0].row()] if sel and self.library else None

    def load_selected(self) -> None:
        m = self._selected_model()
        if m is not None:
            self.loadRequested.emit(m.path)

    def delete_selected(self, confirm: bool = True) -> None:
        m = self._selected_model()
        if m is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Delete model",
                f"Delete {m.name} ({m.size_text}) from {m.where}? This frees the space on disk.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.bridge.delete(m)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a models folder")
        if folder:
            self.bridge.add_folder(folder)

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open GGUF", "", "GGUF models (*.gguf)")
        if path:
            self.bridge.add_file(path)

    def dragEnterEvent(self, event) -> None:
        if any(u.toLocalFile().endswith(".gguf") for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for u in event.mimeData().urls():
            if u.toLocalFile().endswith(".gguf"):
                self.bridge.add_file(u.toLocalFile())

    def closeEvent(self, event) -> None:
        self.bridge.close()
        super().closeEvent(event)

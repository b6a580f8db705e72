"""The conversations, newest first: new, rename, delete with undo, search by text."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from layerlab.core.head import Head

ID_ROLE = Qt.ItemDataRole.UserRole
UNDO_SHOWN_MS = 10_000


class ConversationSidebar(QWidget):
    conversationChosen = Signal(str)  # its id
    newRequested = Signal()

    def __init__(self, head: Head, parent: QWidget | None = None):
        super().__init__(parent)
        self.head = head
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.new_button = QPushButton("New chat")
        self.list = QListWidget()
        self.list.setStyleSheet("QListWidget::item { padding: 5px 4px; }")  # rows to aim at
        # long titles are cut, not scrolled sideways
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setEditTriggers(QListWidget.EditTrigger.EditKeyPressed)
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.undo_bar = QWidget()
        self.undo_label = QLabel()
        self.undo_button = QPushButton("Undo")
        ub = QHBoxLayout(self.undo_bar)
        ub.setContentsMargins(0, 0, 0, 0)
        ub.addWidget(self.undo_label, 1)
        ub.addWidget(self.undo_button)
        self.undo_bar.hide()
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setStyleSheet("color: #a33;")
        self.notice.hide()

        row = QHBoxLayout()
        row.addWidget(self.rename_button)
        row.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.notice)
        layout.addWidget(self.list, 1)
        layout.addLayout(row)
        layout.addWidget(self.undo_bar)

        self._deleted: str | None = None
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.setInterval(UNDO_SHOWN_MS)
        self._undo_timer.timeout.connect(self.undo_bar.hide)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(150)  # search as the person pauses, not per key
        self._search_timer.timeout.connect(self.refresh)

        self.new_button.clicked.connect(self.newRequested)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.list.currentItemChanged.connect(self._chosen)
        self.list.itemChanged.connect(self._renamed)
        self.rename_button.clicked.connect(self._rename_current)
        self.delete_button.clicked.connect(self.delete_current)
        self.undo_button.clicked.connect(self.undo_delete)
        self.refresh()

    @property
    def chat(self):
        return self.head.chat

    def refresh(self, select: str | None = None) -> None:
        """Rebuild the list (newest first, or the search's hits), keeping the selection."""
        current = select or self.current_id()
        text = self.search.text().strip()
        try:
            store = self.chat.store
            if store.message and not self.notice.isVisible():
                self.notice.setText(store.message)
                self.notice.show()
            if text:
                rows = [(h.conversation, h.excerpt) for h in store.search(text)]
            else:
                rows = [(c, "") for c in store.conversations()]
        except Exception as e:  # the list says it instead of breaking the window
            self.notice.setText(f"The conversations could not be read: {e}")
            self.notice.show()
            return
        self.list.blockSignals(True)
        self.list.clear()
        for info, excerpt in rows:
            item = QListWidgetItem(info.title or "New conversation")
            item.setData(ID_ROLE, info.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            if excerpt:
                item.setToolTip(excerpt)
            self.list.addItem(item)
            if info.id == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def current_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(ID_ROLE) if item else None

    def select(self, cid: str) -> None:
        self.refresh(select=cid)

    def _chosen(self, item: QListWidgetItem | None, _previous) -> None:
        if item is not None:
            self.conversationChosen.emit(item.data(ID_ROLE))

    def _rename_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.list.editItem(item)

    def _renamed(self, item: QListWidgetItem) -> None:
        title = item.text().strip()
        if title:
            self.chat.store.rename(item.data(ID_ROLE), title)

    def rename(self, cid: str, title: str) -> None:
        self.chat.store.rename(cid, title)
        self.refresh()

    def delete_current(self) -> None:
        cid = self.current_id()
        if cid is None:
            return
        title = self.list.currentItem().text()
        self.chat.store.delete_conversation(cid)
        self._deleted = cid
        self.undo_label.setText(f"Deleted “{title}”")
        self.undo_bar.show()
        self._undo_timer.start()
        self.list.setCurrentItem(None)
        self.refresh()

    def undo_delete(self) -> None:
        if self._deleted is None:
            return
        cid, self._deleted = self._deleted, None
        self.chat.store.undo_delete_conversation(cid)
        self.undo_bar.hide()
        self._undo_timer.stop()
        self.refresh(select=cid)
        self.conversationChosen.emit(cid)

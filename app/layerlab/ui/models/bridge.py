"""The thin Qt adapter on the head's models hub: every hub call runs off the GUI thread (a
small pool; searches and badges never wait behind a download) and comes back as a signal.

Signals emitted from the pool's threads are queued to this GUI-thread object by Qt.
Download progress arrives ~10 times a second per transfer; it is passed on at most 8 times
a second per item, state changes always.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from layerlab.core.hub.hub import ModelHub
from layerlab.core.hub.problems import HubProblem


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    offline: bool
    token_where: str  # '' when no token is kept; never the token itself


class ModelsBridge(QObject):
    searched = Signal(object)  # list[RepoRow]
    quantsListed = Signal(str, object)  # repo_id, list[Quant]
    badge = Signal(str, str, object)  # repo_id, tag, FitBadge
    badgesDone = Signal(str, object)  # repo_id, recommended Quant | None
    downloadChanged = Signal(object)  # DownloadItem
    libraryListed = Signal(object)  # list[(LibraryModel, ModelFactsRow)]
    problem = Signal(str, str)  # where ('search', 'quants', 'download', 'library', 'hub'), words
    hubSettings = Signal(object)  # HubSettings: endpoint, offline, where a token is kept

    def __init__(self, hub: ModelHub, parent: QObject | None = None):
        super().__init__(parent)
        self.hub = hub
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="models-ui")
        self._last: dict[int, tuple[float, str]] = {}
        self._unsubscribe = None
        self._generation = 0  # a newer repo opened: stale badges stand down

    def _submit(self, where: str, job) -> None:
        def run() -> None:
            try:
                job()
            except HubProblem as e:
                self.problem.emit(where, e.message)
            except Exception as e:  # never a traceback on screen
                self.problem.emit(where, f"Something went wrong: {e}")

        self._pool.submit(run)

    def watch_downloads(self) -> None:
        """Subscribe to the download manager (made on first use, no network)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.hub.downloads.subscribe(self._on_item)

    def continue_downloads(self) -> None:
        """At start: list the downloads the last run left, and continue those it did not
        finish (a quit, a crash, a lost network) without waiting for Resume. Off the GUI
        thread: it reads the state file and starts the transfer process."""

        def job() -> None:
            self.watch_downloads()
            for item in self.hub.downloads.items():
                self.downloadChanged.emit(item)
            self.hub.downloads.continue_restored()

        self._submit("download", job)

    # -- the hub's switches: token, offline, mirror ------
    def _settings(self) -> HubSettings:
        token = self.hub.token.get()
        where = self.hub.token.where if token else ""
        return HubSettings(self.hub.config.endpoint, self.hub.offline, where)

    def read_settings(self) -> None:
        self._submit("hub", lambda: self.hubSettings.emit(self._settings()))

    def set_token(self, token: str) -> None:
        """Keep the token (keyring or a 0600 file); off the GUI thread, a keyring can be slow."""

        def job() -> None:
            if token.strip():
                self.hub.token.set(token)
            self.hubSettings.emit(self._settings())

        self._submit("hub", job)

    def forget_token(self) -> None:
        def job() -> None:
            self.hub.token.clear()
            self.hubSettings.emit(self._settings())

        self._submit("hub", job)

    def set_offline(self, on: bool) -> None:
        def job() -> None:
            self.hub.set_offline(on)
            self.hubSettings.emit(self._settings())

        self._submit("hub", job)

    def set_endpoint(self, url: str) -> None:
        def job() -> None:
            self.hub.set_endpoint(url)
            self.hubSettings.emit(self._settings())

        self._submit("hub", job)

    def _on_item(self, item) -> None:
        now = time.monotonic()
        last_t, last_state = self._last.get(item.id, (0.0, ""))
        if item.state == last_state and now - last_t < 0.125:
            return
        self._last[item.id] = (now, item.state)
        self.downloadChanged.emit(item)
        if item.state == "done":
            self.list_library()

    def search(self, text: str) -> None:
        self._submit("search", lambda: self.searched.emit(self.hub.search(text)))

    def open_repo(self, repo_id: str) -> None:
        self._generation += 1
        generation = self._generation

        def job() -> None:
            quants = self.hub.quants(repo_id)
            # a download of one of these is likely next: its transfer's Python starts now
            self.hub.downloads.prepare()
            self.quantsListed.emit(repo_id, quants)

            def on_badge(q, b, _facts) -> None:
                if generation == self._generation:
                    self.badge.emit(repo_id, q.tag, b)

            badges = self.hub.badges(repo_id, quants, on_badge)
            if generation == self._generation:
                self.badgesDone.emit(repo_id, self.hub.recommended(quants, badges))

        self._submit("quants", job)

    def download(self, repo_id: str, quant) -> None:
        self.watch_downloads()
        self._submit("download", lambda: self.hub.download(repo_id, quant))

    def pause(self, item_id: int) -> None:
        self._submit("download", lambda: self.hub.downloads.pause(item_id))

    def resume(self, item_id: int) -> None:
        self._submit("download", lambda: self.hub.downloads.resume(item_id))

    def cancel(self, item_id: int) -> None:
        self._submit("download", lambda: self.hub.downloads.cancel(item_id))

    def list_library(self) -> None:
        def job() -> None:
            lib = self.hub.library
            self.libraryListed.emit([(m, lib.facts(m)) for m in lib.models()])

        self._submit("library", job)

    def delete(self, model) -> None:
        def job() -> None:
            self.hub.library.delete(model)
            self.list_library()

        self._submit("library", job)

    def add_folder(self, folder: str) -> None:
        def job() -> None:
            try:
                self.hub.library.add_folder(folder)
            except ValueError as e:
                raise HubProblem("other", str(e)) from None
            self.list_library()

        self._submit("library", job)

    def add_file(self, path: str) -> None:
        def job() -> None:
            from layerlab.core.gguf import GGUFError

            try:
                self.hub.library.add_file(path)
            except (ValueError, GGUFError) as e:
                raise HubProblem("unreadable", str(e)) from None
            self.list_library()

        self._submit("library", job)

    def close(self) -> None:
        self._generation += 1
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._pool.shutdown(wait=True, cancel_futures=True)

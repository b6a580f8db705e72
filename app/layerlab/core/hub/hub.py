"""ModelHub: the head's models, in one object: search, quants with fit badges, downloads, the
library, the token and the offline switch.

Made cheaply with the head: nothing here touches the network (or starts a process) until the
person searches, opens a repo or starts a download. With the offline switch on (or
HF_HUB_OFFLINE set) nothing does at all, and the library still works.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from layerlab.core.hub.config import DEFAULT_ENDPOINT, HubConfig, no_telemetry
from layerlab.core.hub.downloads import DownloadItem, DownloadManager, NetworkWait
from layerlab.core.hub.fit import FitBadge, fit_quants, recommended
from layerlab.core.hub.library import Library
from layerlab.core.hub.problems import HubProblem, offline_problem, words_for
from layerlab.core.hub.quants import Quant, list_quants, pick
from layerlab.core.hub.search import RepoRow, repo_id_in, search
from layerlab.core.hub.token import TokenStore
from layerlab.core.planner.devices import PlanDevice


@dataclass
class Cluster:
    """What a fit badge plans on: this cluster's devices, worker names, the person's context."""

    devices: list[PlanDevice]
    n_ctx: int | None = None
    labels: dict[str, str] = field(default_factory=dict)  # worker address -> name


def head_cluster(head, here: list[PlanDevice] | None = None) -> Cluster:
    """This machine's devices (or `here`: a recorded rig's) plus the head's enabled workers'
    latest probe answers, at the context the person uses. `head` is a core/head Head (typed
    loosely: the hub sits below)."""
    from layerlab.core.planner.inputs import enabled_worker_devices, this_machine_devices

    addresses = head.enabled_addresses()
    local = this_machine_devices() if here is None else here
    devices = local + enabled_worker_devices(addresses, dict(head.results))
    labels = {a: head.label(a).split(" (")[0] for a in addresses}
    return Cluster(devices, head.settings.n_ctx, labels)


def local_cluster(n_ctx: int | None = None) -> Cluster:
    from layerlab.core.planner.inputs import this_machine_devices

    return Cluster(this_machine_devices(), n_ctx)


class ModelHub:
    def __init__(
        self,
        config: HubConfig | None = None,
        cluster: Callable[[], Cluster] | None = None,
        *,
        python: str = sys.executable,
        retry_delays_s: tuple[float, ...] | None = None,
        network_wait: NetworkWait | None = None,
    ):
        if config is None:
            config = HubConfig()
            config.apply_saved()
        self.config = config
        self.token = TokenStore(self.config.state_dir)
        self._cluster = cluster or local_cluster
        self._python = python
        self._retry_delays = retry_delays_s
        self._network_wait = network_wait
        self._lock = threading.Lock()
        self._downloads: DownloadManager | None = None
        self._library: Library | None = None

    @classmethod
    def for_head(cls, head) -> ModelHub:
        return cls(cluster=lambda: head_cluster(head))

    # -- the switches ------
    @property
    def offline(self) -> bool:
        return self.config.offline

    def set_offline(self, on: bool) -> None:
        """The offline switch: on, nothing here calls the network (the library still works)."""
        self.config.offline = on
        self.config.save_choices()
        with self._lock:
            downloads = self._downloads
        if on and downloads is not None:
            downloads.drop_spare()  # nobody downloads while offline: no process kept ready

    def set_endpoint(self, url: str) -> str:
        """Use a mirror (or, empty, huggingface.co again); returns the endpoint now in use.
        HubProblem in words when `url` is not a web address."""
        url = url.strip().rstrip("/") or DEFAULT_ENDPOINT
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
            raise HubProblem(
                "other",
                f"'{url}' is not a web address; a mirror looks like https://hf-mirror.com.",
            )
        self.config.endpoint = url
        self.config.save_choices()
        return url

    def _online(self) -> None:
        if self.config.offline:
            raise offline_problem()
        no_telemetry()

    def api(self):
        self._online()
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.config.endpoint, token=self.token.get())

    # -- finding ------
    def search(self, text: str, limit: int = 40) -> list[RepoRow]:
        """GGUF repos for what the person typed; HubProblem in words on any fault."""
        api = self.api()
        try:
            return search(api, text, limit, self.config.host)
        except Exception as e:
            raise words_for(e, f"search for '{text.strip()}'", self.config.host) from None

    def quants(self, repo_id: str, revision: str | None = None) -> list[Quant]:
        api = self.api()
        try:
            quants = list_quants(api, repo_id, revision)
        except Exception as e:
            raise words_for(e, f"list the files of {repo_id}", self.config.host) from None
        if not quants:
            raise HubProblem(
                "no_gguf",
                f"{repo_id} holds no GGUF model file, so llama.cpp cannot load anything from it. "
                "Look for a repo whose name ends in -GGUF.",
            )
        return quants

    def cluster(self) -> Cluster:
        return self._cluster()

    def badges(
        self,
        repo_id: str,
        quants: list[Quant],
        on_badge: Callable[[Quant, FitBadge, object], None] | None = None,
        cluster: Cluster | None = None,
        revision: str | None = None,
    ) -> dict[str, FitBadge]:
        """A fit badge per quant from its remote header (Range requests, never the data)."""
        self._online()
        from layerlab.core.gguf import HubFile

        cluster = cluster or self.cluster()
        token = self.token.get()

        def source_for(q: Quant) -> HubFile:
            return HubFile(
                repo_id, q.first, revision, endpoint=self.config.endpoint, token=token, timeout=15
            )

        return fit_quants(
            quants, source_for, cluster.devices, cluster.n_ctx, cluster.labels, on_badge
        )

    @staticmethod
    def recommended(quants: list[Quant], badges: dict[str, FitBadge]) -> Quant | None:
        return recommended(quants, badges)

    # -- downloads ------
    @property
    def downloads(self) -> DownloadManager:
        with self._lock:
            if self._downloads is None:
                kw = {}
                if self._retry_delays is not None:
                    kw["retry_delays_s"] = self._retry_delays
                if self._network_wait is not None:
                    kw["network_wait"] = self._network_wait
                self._downloads = DownloadManager(
                    self.config, self.token.get, python=self._python, **kw
                )
            return self._downloads

    def download(self, repo_id: str, quant: Quant, revision: str | None = None) -> DownloadItem:
        self._online()
        return self.downloads.add(repo_id, quant.tag, quant.files, revision)

    def pull(self, spec: str) -> DownloadItem:
        """'owner/repo[:QUANT]' (llama.cpp's -hf convention: the tag is case-insensitive,
        Q4_K_M by default) queued for download."""
        repo_id, tag = parse_spec(spec, self.config.host)
        self._online()
        self.downloads.prepare()  # the transfer's Python starts while the files are listed
        quants = self.quants(repo_id)
        quant = pick(quants, tag)
        if quant is None:
            have = ", ".join(q.tag for q in quants)
            raise HubProblem("not_found", f"{repo_id} has no {tag.upper()} quant; it has {have}.")
        return self.download(repo_id, quant)

    # -- the library ------
    @property
    def library(self) -> Library:
        with self._lock:
            if self._library is None:
                self._library = Library(self.config)
            return self._library

    def close(self) -> None:
        with self._lock:
            downloads, self._downloads = self._downloads, None
        if downloads is not None:
            downloads.close()


def parse_spec(spec: str, host: str = "huggingface.co") -> tuple[str, str | None]:
    """('owner/repo', 'Q4_K_M' or None) from 'owner/repo[:quant]' or a hub URL."""
    text = spec.strip()
    tag = None
    if ":" in text and "://" not in text:
        text, tag = text.split(":", 1)
        tag = tag.strip() or None
    repo_id = repo_id_in(text, host)
    if repo_id is None:
        raise HubProblem("not_found", f"'{spec}' is not a repo on the hub (owner/repo[:QUANT]).")
    return repo_id, tag

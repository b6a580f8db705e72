"""The head carries the models hub: made without touching the network, planning on this
machine at the person's context, closed with the head."""

from __future__ import annotations

from layerlab.core.head import Head
from layerlab.core.settings import Settings
from tests.hub.conftest import REPO
from tests.hub.test_offline import no_internet  # noqa: F401  (the fixture)


def test_head_models_plan_on_this_machine_at_the_persons_context(tmp_path, no_internet):  # noqa: F811
    head = Head(Settings(n_ctx=2048), persist=False, state_dir=tmp_path)
    try:
        cluster = head.models.cluster()
        assert cluster.n_ctx == 2048
        assert any(d.is_host for d in cluster.devices)
        assert cluster.labels == {}
    finally:
        head.close()


def test_head_models_badges_from_the_standin(tmp_path, config):
    head = Head(persist=False, state_dir=tmp_path)
    head.models.config = config
    try:
        quants = head.models.quants(REPO)
        badges = head.models.badges(REPO, quants)
        assert set(badges) == {q.tag for q in quants}
        assert all(b.fits for b in badges.values())  # a few MB fit any machine
    finally:
        head.close()

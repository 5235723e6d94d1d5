"""A peer's ledger: each image settled, failed or in flight, as its sessions go; what is in
flight when the peer is given up fails with the reason and keeps its bytes; what settled
stays as it settled."""

from __future__ import annotations

from imgsync.model import Action, Marker
from imgsync.source.ledger import Ledger

WEB, DB = "docker.io/acme/web:1", "docker.io/acme/db:1"
V1, V2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def marker(image: str, version: str) -> Marker:
    return Marker(image, version, (), "b.tar", 1, "0" * 64, "now")


def test_an_image_in_flight_when_the_peer_is_given_up_fails_with_the_reason_and_its_bytes() -> None:
    ledger = Ledger("edge")
    ledger.begin(WEB, V1).bytes_sent = 4096
    ledger.fail_pending([WEB], {WEB: marker(WEB, V1)}, {}, "peer edge: connection lost")
    [web] = ledger.results([WEB])
    assert (web.action, web.error, web.bytes_sent) == (
        Action.FAILED, "peer edge: connection lost", 4096,
    )  # fmt: skip


def test_a_settled_image_is_not_failed_when_the_peer_is_given_up() -> None:
    ledger = Ledger("edge")
    ledger.unchanged(WEB, V1)
    ledger.begin(DB, V2)
    ledger.applied(DB, Action.LOADED)
    markers = {WEB: marker(WEB, V1), DB: marker(DB, V2)}
    ledger.fail_pending([WEB, DB], markers, {}, "gone")
    assert [r.action for r in ledger.results([WEB, DB])] == [Action.UNCHANGED, Action.LOADED]


def test_an_image_never_seen_fails_with_its_exports_error_or_the_peers() -> None:
    ledger = Ledger("edge")
    ledger.fail_pending([WEB, DB], {DB: marker(DB, V2)}, {WEB: "docker save failed"}, "gone")
    web, db = ledger.results([WEB, DB])
    assert (web.version, web.error) == (None, "docker save failed")
    assert (db.version, db.error) == (V2, "gone")


def test_a_thin_bundle_refused_stays_in_flight_and_the_full_one_counts_on() -> None:
    ledger = Ledger("edge")
    thin = ledger.begin(WEB, V1)
    thin.bytes_sent, thin.transfer = 100, "thin"
    ledger.took(WEB, 0.5)  # the apply that found layers missing
    full = ledger.begin(WEB, V1)
    full.bytes_sent += 900
    ledger.applied(WEB, Action.LOADED)
    [web] = ledger.results([WEB])
    assert (web.action, web.bytes_sent, web.seconds) == (Action.LOADED, 1000, 0.5)


def test_a_new_attempt_counts_on_the_bytes_of_a_failed_one() -> None:
    ledger = Ledger("edge")
    ledger.begin(WEB, V1).bytes_sent = 300
    ledger.fail(WEB, "upload refused")
    ledger.begin(WEB, V1).bytes_sent += 700
    assert ledger.needs(WEB)
    ledger.applied(WEB, Action.LOADED)
    [web] = ledger.results([WEB])
    assert (web.action, web.error, web.bytes_sent) == (Action.LOADED, None, 1000)
    assert not ledger.needs(WEB)


def test_results_are_copies_in_the_order_asked() -> None:
    ledger = Ledger("edge")
    ledger.unchanged(WEB, V1)
    ledger.unchanged(DB, V2)
    first, second = ledger.results([DB, WEB, "docker.io/acme/none:1"])
    assert (first.image, second.image) == (DB, WEB)
    first.action = Action.FAILED
    assert ledger.results([DB])[0].action is Action.UNCHANGED

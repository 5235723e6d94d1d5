"""One peer's results in one cycle, image by image, kept by its sessions as they go.

Each image is in one of four states: not seen yet; **settled** (unchanged, loaded or
restored); **failed** with a reason; or **in flight** — its bundle is planned to go, and
what the peer's apply says is not known yet. Only an in-flight image carries the bytes
sent so far without an outcome. A session that breaks off leaves its images in flight;
the next attempt takes them up again (their bytes counted on), and when there is none
:meth:`Ledger.fail_pending` fails them with the reason. What finished before a failure
stays as it finished. The ledger is the only writer of its results; :meth:`results` hands
out copies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from imgsync.model import Action, Marker, Result


class Ledger:
    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._results: dict[str, Result] = {}
        self._in_flight: set[str] = set()

    # -- what a session records ------------------------------------------------------------
    def unchanged(self, image: str, version: str) -> None:
        """The peer runs ``version`` already: nothing to send."""
        self._settle(image, Result(self.peer, image, version, Action.UNCHANGED))

    def fail(self, image: str, error: str, version: str | None = None) -> None:
        """``image`` failed for ``error`` (its bytes so far kept; its version, if known)."""
        earlier = self._results.get(image)
        if earlier is None:
            self._results[image] = Result(self.peer, image, version, Action.FAILED, error=error)
        else:
            earlier.action, earlier.error = Action.FAILED, error
            earlier.version = version or earlier.version
        self._in_flight.discard(image)

    def begin(self, image: str, version: str) -> Result:
        """``image`` goes to the peer: in flight, the bytes of earlier attempts counted on
        (one still in flight — a thin bundle refused, a session broken off — goes on as it
        is). Return its result, for the send to add its bytes, time and transfer to."""
        if image in self._in_flight:
            return self._results[image]
        earlier = self._results.get(image)
        sent = earlier.bytes_sent if earlier is not None else 0
        self._results[image] = Result(self.peer, image, version, Action.FAILED, sent)
        self._in_flight.add(image)
        return self._results[image]

    def applied(
        self, image: str, action: Action, published: str | None = None, error: str | None = None
    ) -> None:
        """The peer applied ``image``: loaded, restored, or found it ran it already (and
        published it to its site registry, or says why not)."""
        result = self._results[image]
        result.action, result.error = action, None
        result.published, result.publish_error = published, error
        self._in_flight.discard(image)

    def took(self, image: str, seconds: float) -> None:
        """The peer's apply of ``image`` took ``seconds`` (whatever its outcome)."""
        self._results[image].seconds += seconds

    def engine(self, images: Iterable[str], version: str | None, store: str | None) -> None:
        """What the peer's inventory said of its engine, on these images' results."""
        for image in images:
            if image in self._results:
                self._results[image].engine, self._results[image].store = version, store

    def fail_pending(
        self,
        images: Iterable[str],
        markers: Mapping[str, Marker],
        export_errors: Mapping[str, str],
        error: str,
    ) -> None:
        """The peer is given up: fail each of ``images`` not seen or still in flight — with
        its export's error when the source could not export it, else with ``error``."""
        for image in images:
            seen = image in self._results
            if image in export_errors and not seen:
                self.fail(image, export_errors[image])
            elif image in markers and (not seen or image in self._in_flight):
                self.fail(image, error, markers[image].version)

    # -- what the cycle asks ---------------------------------------------------------------
    def needs(self, image: str) -> bool:
        """Still to do in this session: not seen, failed, or in flight."""
        result = self._results.get(image)
        return result is None or result.action is Action.FAILED

    def transfer(self, image: str) -> str | None:
        return self._results[image].transfer

    def results(self, images: Iterable[str]) -> list[Result]:
        """The results of ``images`` that have one, in that order, as copies."""
        return [replace(self._results[image]) for image in images if image in self._results]

    def _settle(self, image: str, result: Result) -> None:
        self._results[image] = result
        self._in_flight.discard(image)

"""Recognize node: read the plates of the message's image through the configured reader."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from PIL import Image

from bridge.core.errors import ReaderPayloadTooLarge, ReaderUnavailable
from bridge.core.messages import Message, Reuse
from bridge.imaging.digest import frame_digest
from bridge.imaging.images import downscale_to_fit
from bridge.imaging.platecrops import decode_grey, plate_boxes, plate_crops, plates_difference
from bridge.imaging.signature import Mask, Signature, difference, signature
from bridge.nodes.base import Node, NodeContext, NodeSettings
from bridge.nodes.localfirst import NearMiss, route_lists, route_settings
from bridge.nodes.repeats import CameraLocks, Evidence, FrameRepeats, Reading

# The cloud refuses uploads above about 3 MB; a 413 retry aims below that, or at half the refused size.
DOWNSCALE_TARGET_BYTES = 2_500_000
REUSE_REASONS = ("identical", "similar", "interval")
# Why a frame local first read offline went to the paid reader after all (bridge/reader/cascade.py).
LOCAL_DECLINES = ("busy", "no_plate", "unconfident", "off_layout", "near_miss", "failed")


class RecognizeNode(Node):
    """Calls the reader with the route's (or the envelope's) regions, mmc, config, camera id and the
    frame's timestamp, through the shared guard (rate limit, retries, breaker). On a 413 it downscales
    the image once and retries, and the event reports the scale used.

    Within the route's `repeat_window`, a frame reuses a recent reading of its camera (with the same
    parameters) instead of a paid call (`"cached": true` in its event, with the reason):

    - `identical`: byte for byte the frame that was read (a snapshot sent twice);
    - `similar`: the same scene (bridge/imaging/signature.py: re-encoded, brighter or darker, the clock in the
      picture changed, masked regions aside), which a parked car in front of a live camera is. When
      the reading found plates, each plate box must also be unchanged up close (bridge/imaging/platecrops.py):
      another car of the same make and colour at the same spot looks the same at 64 pixels, not its
      plate. A reading whose plates cannot be compared (no box, its frame let go) is not reused;
    - `interval`: `reuse.vehicle_interval` is set and the camera's last reading, less than that long
      ago, has a plate: a vehicle in view is read a few times, not at the camera's frame rate. Nothing
      proves the plate is the same one, so strict watch lists (access control) ignore these events.
    """

    type = "recognize"

    def __init__(self, settings: NodeSettings, context: NodeContext) -> None:
        super().__init__(settings, context)
        reuse = context.route.reuse
        self.cache = FrameRepeats(
            cameras=reuse.cameras,
            history=reuse.history,
            window=context.route.repeat_window,
            frame_bytes=reuse.frame_bytes,
        )
        self._mask = Mask(reuse.mask)
        self._locks = CameraLocks()
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic
        local_first = context.local_first
        self._local_first, self._precision = (
            route_settings(context.route, local_first.enabled, local_first.precision)
            if local_first is not None
            else (False, 1.0)
        )
        self._near_miss = (
            NearMiss(route_lists(context.route, context.watchlists), context.live_watchlists)
            if self._local_first
            else None
        )
        self._paid_kind = getattr(context.reader, "kind", None) or "sdk"

    def stats(self) -> dict[str, int]:
        """Frames seen, reader calls made, and calls saved by each reason (see the class docstring)."""
        with self._counts_lock:
            counts = dict(self._counts)
        saved = {reason: counts.get(f"reused_{reason}", 0) for reason in REUSE_REASONS}
        saved["local"] = counts.get("saved_local", 0)
        return {
            "frames": counts.get("frames", 0),
            "calls": counts.get("calls", 0),
            "calls_saved": sum(saved.values()),
            **{f"saved_{reason}": count for reason, count in saved.items()},
            # Local first: frames read offline and sent to the paid reader after all, by reason, and
            # frames the quota guard had read offline alone (bridge/reader/cascade.py).
            **{f"local_declined_{reason}": counts.get(f"declined_{reason}", 0) for reason in LOCAL_DECLINES},
            "local_only": counts.get("local_only", 0),
            # Similar scenes read again because a plate box changed (or could not be compared).
            "similar_plates_changed": counts.get("plates_changed", 0),
            # Frames of a busy camera read without a look (repeats.Pace).
            "not_compared": counts.get("not_compared", 0),
            "cache_cameras": len(self.cache),
            "cache_bytes": self.cache.nbytes,
        }

    def _count(self, *names: str) -> None:
        with self._counts_lock:
            self._counts.update(names)

    def process(self, msg: Message) -> Message:
        if msg.image is None:
            raise RuntimeError("the recognize node needs a decoded image: put decode before it")
        if not self.context.route.repeat_window:
            return self._answer(msg)
        # A camera's frames are decided one at a time: the second of two frames read at once would
        # otherwise pay for what the first is about to answer.
        with self._locks.hold(msg.camera_id):
            return self._recognize_or_reuse(msg)

    def _recognize_or_reuse(self, msg: Message) -> Message:
        assert msg.image is not None
        reuse = self.context.route.reuse
        parameters = (msg.regions, msg.mmc, json.dumps(msg.engine_config, sort_keys=True))
        frame_time = (msg.timestamp or msg.received_at).timestamp()
        now = self.clock()
        recent = [
            reading
            for reading in self.cache.recent(msg.camera_id, frame_time, now)
            if reading.parameters == parameters
        ]
        # A digest, not the image: 16 bytes kept instead of the frame (XXH3 with [fast]: ~3 us). A raw
        # image frame is its payload, digested once already where it arrived (the retained check).
        if msg.payload_digest is not None and msg.image is msg.payload:
            digest = msg.payload_digest
        else:
            digest = frame_digest(msg.image)
        for reading in reversed(recent):
            if reading.digest == digest:
                self.cache.pace(msg.camera_id).reused()
                return self._reuse(msg, reading, "identical")
        # Looked at only as closely as a comparison needs: with no recent reading, not at all.
        look = _Look(msg.image, self._mask)
        pace = self.cache.pace(msg.camera_id)
        if reuse.similar and recent and pace.looks(frame_time):
            # Newest first, and the first similar one whose plates are unchanged wins: a parked car
            # matches the camera's last reading at once.
            for reading in reversed(recent):
                if self._similar(reading, look):
                    if not reading.has_plate or self._same_plates(reading, look):
                        pace.reused()
                        return self._reuse(msg, reading, "similar")
                    self._count("plates_changed")
        elif reuse.similar and recent:
            self._count("not_compared")
        if reuse.vehicle_interval and recent:
            last = recent[-1]
            # Either side: two workers may take a camera's frames a moment out of order.
            if last.has_plate and abs(frame_time - last.frame_time) < reuse.vehicle_interval:
                return self._reuse(msg, last, "interval")
        read = self._answer(msg)
        assert read.result is not None
        results = read.result.get("results")
        keep = reuse.similar and pace.keeps_frame
        pace.read()
        # What a later frame compares with is made when one asks; until then the frame is kept.
        evidence = Evidence(
            frame=msg.image if keep else None,
            signature=look.signature_or_none,
            boxes=plate_boxes(read.result, read.scale) if results else (),
        )
        self.cache.add(
            msg.camera_id,
            Reading(
                digest=digest,
                parameters=parameters,
                result=read.result,
                scale=read.scale,
                frame_time=frame_time,
                read_at=now,
                has_plate=bool(results),
                evidence=evidence,
                nbytes=len(digest) + len(orjson.dumps(read.result)),
                reader=read.reader,
            ),
        )
        return read

    def _similar(self, reading: Reading, look: _Look) -> bool:
        """Whether the frame `look` looks at shows the scene of `reading` (their signatures)."""
        evidence = reading.evidence
        threshold = self.context.route.reuse.threshold
        if evidence.signature is None:
            # Read once: another camera's reading may let this frame go (the cache's byte budget).
            frame = evidence.frame
            if frame is None:
                return False  # its frame was let go before anything asked: nothing to compare with
            evidence.signature = signature(frame, self._mask)
            if not evidence.needs_frame:
                self.cache.done_with_frame(evidence)
        whole = look.signature()
        if evidence.signature is None or whole is None:
            return False
        return difference(evidence.signature, whole, self._mask, stop_above=threshold) <= threshold

    def _same_plates(self, reading: Reading, look: _Look) -> bool:
        """Whether each plate box of `reading` is unchanged in the frame `look` looks at."""
        evidence = reading.evidence
        if not evidence.boxes:
            return False  # plates without boxes: nothing proves a later frame shows them
        if evidence.crops is None:
            frame = evidence.frame
            if frame is None:
                return False
            known = decode_grey(frame)
            crops = plate_crops(known, evidence.boxes) if known is not None else None
            if crops is None:
                evidence.boxes = None  # nothing to compare, now or later
            evidence.crops = crops
            self.cache.done_with_frame(evidence)
            if crops is None:
                return False
        grey = look.grey()
        if grey is None or evidence.crops is None:
            return False
        threshold = self.context.route.reuse.plate_threshold
        return plates_difference(evidence.crops, grey, stop_above=threshold) <= threshold

    def _reuse(self, msg: Message, reading: Reading, reason: str) -> Message:
        self._count("frames", f"reused_{reason}")
        return msg.replace(
            result=reading.result,
            scale=reading.scale,
            reused=Reuse(reason, datetime.fromtimestamp(reading.frame_time, UTC)),
            reader=reading.reader or msg.reader,
        )

    def _answer(self, msg: Message) -> Message:
        """The frame's reading: the paid reader's, or the offline one's when local first trusts it
        (or the quota guard has the offline reader answer alone)."""
        local_first = self.context.local_first
        if local_first is None or not self._local_first:
            return self._paid(msg)
        assert msg.image is not None
        quota = local_first.quota
        if quota is not None and quota.reason == "calls_left":
            return self._offline_only(msg, "calls_left")
        guard = self.context.guard
        if guard is not None and guard.state == "unavailable":
            # The circuit is open: the guard fails the call at once, or lets it through as its probe,
            # which closes the circuit again when it is answered.
            try:
                return self._paid(msg, count=False)
            except ReaderUnavailable:
                return self._offline_only(msg, "circuit_open")
        outcome = local_first.consider(
            msg.image,
            regions=msg.regions,
            precision=self._precision,
            near_miss=self._near_miss,
            camera_id=msg.camera_id,
            timestamp=msg.timestamp or msg.received_at,
        )
        if outcome.accepted and outcome.answer is not None:
            self._count("frames", "saved_local")
            return msg.replace(result=outcome.answer, reader="local")
        self._count(f"declined_{outcome.reason}")
        try:
            return self._paid(msg)
        except ReaderUnavailable:
            if outcome.answer is None or guard is None or guard.state != "unavailable":
                raise
            # The call that opened the circuit: the offline reading already made answers.
            self._count("local_only")
            return msg.replace(result=outcome.answer, reader="local", local_only="circuit_open")

    def _offline_only(self, msg: Message, reason: str) -> Message:
        local_first = self.context.local_first
        assert local_first is not None and msg.image is not None
        self._count("frames", "local_only")
        answer = local_first.read(
            msg.image,
            regions=msg.regions,
            camera_id=msg.camera_id,
            timestamp=msg.timestamp or msg.received_at,
        )
        return msg.replace(result=answer, reader="local", local_only=reason)

    def _paid(self, msg: Message, *, count: bool = True) -> Message:
        if count:
            self._count("frames", "calls")
        read = self._recognize(msg)
        if not count:
            self._count("frames", "calls")
        local_first = self.context.local_first
        if local_first is not None and local_first.quota is not None and read.result is not None:
            local_first.quota.usage(read.result)  # an SDK's answers carry its usage
        return read.replace(reader=self._paid_kind)

    def _recognize(self, msg: Message) -> Message:
        assert msg.image is not None
        try:
            return msg.replace(result=self._read(msg, self._upload(msg)))
        except ReaderPayloadTooLarge:
            try:
                smaller, scale = downscale_to_fit(msg.image, min(DOWNSCALE_TARGET_BYTES, len(msg.image) // 2))
            except ValueError as exc:
                raise ReaderPayloadTooLarge(
                    f"413: the image is too large for the service and could not be downscaled ({exc})",
                    status_code=413,
                ) from None
            smaller_msg = msg.replace(image=smaller, image_base64=None, image_format="jpeg", scale=scale)
            return smaller_msg.replace(result=self._read(smaller_msg, smaller))

    def _upload(self, msg: Message) -> bytes | str:
        # A frame that arrived as base64 goes out as the same text when the reader sends base64.
        if msg.image_base64 is not None and getattr(self.context.reader, "upload_base64", False):
            # Strict base64 decoded from it, so it is plain ASCII without whitespace.
            return msg.image_base64.decode("ascii")
        assert msg.image is not None
        return msg.image

    def _read(self, msg: Message, upload: bytes | str) -> dict[str, Any]:
        reader = self.context.reader
        if reader is None:
            raise RuntimeError("the recognize node needs a reader in its context")

        def read() -> dict[str, Any]:
            return reader.read(
                upload,
                regions=msg.regions,
                camera_id=msg.camera_id,
                timestamp=msg.timestamp or msg.received_at,
                mmc=msg.mmc or None,
                config=msg.engine_config or None,
                filename=f"{msg.camera_id or 'camera'}.{'png' if msg.image_format == 'png' else 'jpg'}",
            )

        guard = self.context.guard
        return guard.call(read) if guard is not None else read()


class _Look:
    """A frame looked at only as closely as the comparisons ask, each view made once: its signature
    (bridge/imaging/signature.py), its grey picture for the plate boxes (bridge/imaging/platecrops.py)."""

    __slots__ = ("_grey", "_image", "_made", "_mask", "_signature")

    def __init__(self, image: bytes, mask: Mask) -> None:
        self._image = image
        self._mask = mask
        self._signature: Signature | None = None
        self._grey: Image.Image | None = None
        self._made: set[str] = set()

    def signature(self) -> Signature | None:
        if "signature" not in self._made:
            self._made.add("signature")
            self._signature = signature(self._image, self._mask)
        return self._signature

    def grey(self) -> Image.Image | None:
        if "grey" not in self._made:
            self._made.add("grey")
            self._grey = decode_grey(self._image)
        return self._grey

    @property
    def signature_or_none(self) -> Signature | None:
        """The signature if it was made (nothing is decoded for it)."""
        return self._signature

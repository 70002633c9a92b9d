"""Join scenes: how a person became a member (store QR code, shopping guide, live room,
campaign), and the tags a new member gets from it.

Convention (documented in gateway/README.md "Tags and segments"):

==============  ======================  ==============================
scene kind      reference               tags on the new member
==============  ======================  ==============================
``store_qr``    store code              ``scene:store_qr``, ``store:<code>``
``guide``       guide code              ``scene:guide``, ``guide:<code>``
``live``        live-room id            ``scene:live``, ``live:<room>``
``campaign``    campaign code           ``scene:campaign``, ``campaign:<code>``
``other``       free reference          ``scene:other``, ``ref:<reference>``
==============  ======================  ==============================

Tags are normalised (:mod:`gateway.tags.normalise`); a reference too long for a 64-character tag
is refused rather than cut (two different stores must never become one tag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import InvalidInput
from gateway.tags.normalise import MAX_TAG, normal

SCENE_KINDS: dict[str, str] = {
    "store_qr": "store",
    "guide": "guide",
    "live": "live",
    "campaign": "campaign",
    "other": "ref",
}
"""Scene kind → the prefix of its reference tag."""

MAX_REF = MAX_TAG - len("campaign:")


@dataclass(frozen=True, slots=True)
class JoinScene:
    """How a member joined: ``kind`` (one of :data:`SCENE_KINDS`) and the channel's reference
    (store code, guide code, live-room id, campaign code), if any."""

    kind: str
    ref: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCENE_KINDS:
            raise InvalidInput(
                f"scene kind must be one of {', '.join(SCENE_KINDS)}", field="scene.kind"
            )
        if self.ref is not None:
            if not isinstance(self.ref, str) or not normal(self.ref):
                raise InvalidInput("scene ref must be non-empty text or null", field="scene.ref")
            if len(normal(self.ref)) > MAX_REF or "," in self.ref:
                raise InvalidInput(
                    f"scene ref must be at most {MAX_REF} characters without commas",
                    field="scene.ref",
                )
            if any(ord(c) < 32 for c in self.ref):
                raise InvalidInput("scene ref has control characters", field="scene.ref")

    def tags(self) -> list[str]:
        """The tags a member joining by this scene gets (source ``scene``)."""
        out = [f"scene:{self.kind}"]
        if self.ref is not None:
            out.append(f"{SCENE_KINDS[self.kind]}:{normal(self.ref)}")
        return out

    def payload(self) -> dict[str, Any]:
        """The ``scene`` value of a ``member.joined`` payload."""
        return {"kind": self.kind, "ref": self.ref}

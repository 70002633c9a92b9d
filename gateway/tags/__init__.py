"""Member tags (issue #5 scope 3): from the scene a member joined by (``scene``), derived from
behaviour (``behaviour``: categories and channels bought), set by staff (``manual``) or by rules.
See ``gateway/README.md`` "Tags and segments" for the conventions."""

from gateway.tags.derive import DeriveReport, derive_in, derive_tags
from gateway.tags.normalise import MAX_TAG, normal
from gateway.tags.scene import SCENE_KINDS, JoinScene
from gateway.tags.store import TagRow, add_tags, remove_tags, scene_tags, tag_counts, tags_for

__all__ = [
    "MAX_TAG",
    "SCENE_KINDS",
    "DeriveReport",
    "JoinScene",
    "TagRow",
    "add_tags",
    "derive_in",
    "derive_tags",
    "normal",
    "remove_tags",
    "scene_tags",
    "tag_counts",
    "tags_for",
]

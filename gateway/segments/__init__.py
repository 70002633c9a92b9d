"""Segments (issue #5 scope 3): named member filters, static snapshots and dynamic segments whose
refresh emits ``segment.entered`` / ``segment.left``. See ``gateway/README.md`` "Tags and
segments" for the filter language.

For jobs that visit a segment's members (coupon bulk issuance): :func:`get_segment` and
:func:`member_ids_after` (a keyset walk over ``segment_member`` in ``member_id`` order, active
members only)."""

from gateway.segments.build import (
    Change,
    add_members,
    create_segment,
    dynamic_segments,
    preview,
    refresh_in,
    refresh_segment,
    remove_members,
    update_segment,
)
from gateway.segments.filter import Filter, FilterInvalid, parse
from gateway.segments.model import Segment
from gateway.segments.reads import (
    get_segment,
    list_segments,
    matching,
    member_ids_after,
    members_page,
    segments_for,
)

__all__ = [
    "Change",
    "Filter",
    "FilterInvalid",
    "Segment",
    "add_members",
    "create_segment",
    "dynamic_segments",
    "get_segment",
    "list_segments",
    "matching",
    "member_ids_after",
    "members_page",
    "parse",
    "preview",
    "refresh_in",
    "refresh_segment",
    "remove_members",
    "segments_for",
    "update_segment",
]

"""Members: ONE ID resolution, profile provenance, merge / unmerge and batch reads.

This module is the stable import surface (``from gateway import members``); the implementation
lives in :mod:`gateway.identity` so that each concern stays a small module.
"""

from __future__ import annotations

from gateway.identity.ingest import ingest
from gateway.identity.merge import merge, unmerge
from gateway.identity.model import (
    AttributeRow,
    IdentifierInput,
    IdentityRow,
    IngestResult,
    MemberFilter,
    MemberRow,
    MergeInfo,
    ProfileInput,
)
from gateway.identity.reads import (
    attributes_for,
    find_by_identifier,
    get_members,
    identities_for,
    list_members,
    merges_for,
    resolve,
)

__all__ = [
    "AttributeRow",
    "IdentifierInput",
    "IdentityRow",
    "IngestResult",
    "MemberFilter",
    "MemberRow",
    "MergeInfo",
    "ProfileInput",
    "attributes_for",
    "find_by_identifier",
    "get_members",
    "identities_for",
    "ingest",
    "list_members",
    "merge",
    "merges_for",
    "resolve",
    "unmerge",
]

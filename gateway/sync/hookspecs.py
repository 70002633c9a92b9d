"""Connector hooks: the pluggy contract a connector package implements.

A connector package registers a module (or object) under the ``memberhub.connectors`` entry-point
group; the gateway loads the group and calls these hooks. Every hook is documented in
``connectors/README.md`` with its exact signature (``tests/test_connector_docs.py`` fails when one
is not). Use the ``hookimpl`` marker from this module (or ``gateway.rules.hookspecs`` — both
belong to the pluggy project ``memberhub``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pluggy

from gateway.identifiers import IdentifierKind

if TYPE_CHECKING:
    from gateway.sync.contract import Connector
    from gateway.sync.push import PushContext

PROJECT = "memberhub"
ENTRY_POINT_GROUP = "memberhub.connectors"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class WebhookRequest:
    """An inbound platform push as received (the raw body is what signatures cover)."""

    method: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class WebhookReply:
    """What to answer the platform (its own success / error shape)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


WebhookHandler = Callable[["Connector", WebhookRequest, "PushContext"], Awaitable[WebhookReply]]


@dataclass(frozen=True)
class Webhook:
    """A push endpoint of a connector, served at ``/channels/{tenant}/{channel}/hooks/{name}``
    (GET and POST: some platforms verify the URL with a GET first) for every connection of
    ``connector``.

    ``handler(connector, request, push)`` must verify the platform's signature with the
    connection's secrets *before* using the body, then hand records to ``push.apply`` and
    answer in the platform's shape.
    """

    connector: str
    name: str
    handler: WebhookHandler
    description: str = ""


class ConnectorSpecs:
    """Hook specifications for connector plugins."""

    @hookspec
    def register_connectors(self) -> Sequence[type[Connector]]:
        """Return the connector classes this plugin provides.

        Each class subclasses :class:`gateway.sync.contract.Connector` and has a ``name``
        unique among installed connectors; a brand configures a channel by naming it.
        """

    @hookspec
    def register_identifier_kinds(self) -> Sequence[IdentifierKind]:
        """Return identifier kinds the plugin's records use beyond the built-in ones.

        A *strong* kind merges members that share it (use it only for ids that name one
        person); a *weak* kind attaches to a member but never merges two. Registering a kind
        that already exists with different properties is refused at load time.
        """

    @hookspec
    def register_webhooks(self) -> Sequence[Webhook]:
        """Return push endpoints (platform webhooks, SPI callbacks) for connectors.

        A webhook may belong to a connector from another package (e.g. a POS middleware's
        push for the built-in ``pos`` connector).
        """


__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "ConnectorSpecs",
    "Webhook",
    "WebhookReply",
    "WebhookRequest",
    "hookimpl",
    "hookspec",
]

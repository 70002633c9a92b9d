"""Rules: the pluggy contract for rule plugins, their discovery, and the earning path.

Plugin authors need only :mod:`gateway.rules.hookspecs` (``hookimpl``, ``Intent``,
``MemberSnapshot``, ``EventView``); the gateway uses :mod:`~gateway.rules.manager` to load
plugins from entry points and :mod:`~gateway.rules.earning` to turn events into ledger credits.
"""

from gateway.rules.hookspecs import (
    EventView,
    Intent,
    MemberSnapshot,
    RuleSet,
    hookimpl,
    hookspec,
)

__all__ = ["EventView", "Intent", "MemberSnapshot", "RuleSet", "hookimpl", "hookspec"]

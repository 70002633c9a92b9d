"""Rules: the pluggy contract for rule plugins, per-tenant config, and the rule engine.

Plugin authors need only :mod:`gateway.rules.hookspecs` (``hookimpl``, the outcome types
``Intent`` / ``Grant``, ``MemberSnapshot``, ``EventView``, tier and task definitions) and, for
their tests, ``plugins.testing``. The gateway uses :mod:`~gateway.rules.manager` to load plugins
from entry points, :mod:`~gateway.rules.config` for each tenant's versioned config and
:mod:`~gateway.rules.engine` to turn member events into ledger credits, grants and tier changes.
"""

from gateway.rules.hookspecs import (
    EventView,
    Grant,
    Intent,
    MemberSnapshot,
    RuleSet,
    hookimpl,
    hookspec,
)

__all__ = ["EventView", "Grant", "Intent", "MemberSnapshot", "RuleSet", "hookimpl", "hookspec"]

"""memberhub gateway: the domain core (tenancy, identity, ledger, orders, rules) and the ASGI app.

The gateway never imports ``connectors`` or ``plugins`` directly; it finds them through the
``memberhub.connectors`` and ``memberhub.rules`` entry points, exactly like a partner's package.
"""

__version__ = "0.1.0"

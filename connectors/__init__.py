"""Built-in channel connectors and the partner kit.

Connectors reach the gateway only through the ``memberhub.connectors`` entry-point group, exactly as
a partner's package does; the gateway never imports this package directly. See ``README.md``.
"""

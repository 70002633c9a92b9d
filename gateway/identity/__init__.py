"""ONE ID: identity resolution, profile provenance, merge / unmerge and batch reads of members.

The public surface is :mod:`gateway.members`; this package splits it into small modules:
``model`` (value types), ``profile`` (provenance rule), ``ingest``, ``merge`` and ``reads``.
"""

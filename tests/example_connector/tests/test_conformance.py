"""Example Shop passes the memberhub connector conformance kit.

This is the one test file a partner writes: the kit generates the whole suite (spec, check,
discovery, records against the canonical schemas, incremental reads and resume, faults, token
handling, ONE ID across channels) and runs it against ``ExampleShopFake`` on 127.0.0.1.

Run it with the connector installed next to memberhub::

    pip install -e .            # registers the memberhub.connectors entry point
    pytest tests                # --connector-strictness=lenient to skip missing harness pieces
"""

from memberhub_example_shop import ExampleShop
from memberhub_example_shop.testing import ExampleShopHarness

from connectors.testing import connector_suite

TestExampleShop = connector_suite(
    ExampleShopHarness(
        ExampleShop, "example", capabilities=frozenset({"orders", "refunds", "rate_limit"})
    )
)

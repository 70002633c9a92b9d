"""memberhub's own test run does not collect the example package's tests in place: they import
``memberhub_example_shop``, which is not installed here. ``tests/test_connector_kit.py`` runs
the kit on the example in-process, and runs this package's tests in a subprocess against the
package installed through its entry point, the way a partner runs them."""

collect_ignore = ["tests", "memberhub_example_shop", "build"]

"""memberhub's own test run does not collect the example package's tests in place: they import
``memberhub_weekend_points``, which is not installed here. ``tests/test_third_party_rules.py``
installs the package through its entry point into a throwaway directory and runs these tests in a
subprocess, the way a partner runs them."""

collect_ignore = ["tests", "memberhub_weekend_points", "build"]

"""Built-in rule plugins.

Each sub-package is a rule plugin registered under the ``memberhub.rules`` entry-point group in
``pyproject.toml``, exactly as a partner's package would register; the gateway never imports
these modules by name. A brand enables a plugin's rule sets per tenant (``tenant.enabled_rules``).
"""

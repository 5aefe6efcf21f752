"""mtlkit's bundled plugins (installed as ``mtlkit_plugins``).

Each module is registered through the ``mtlkit`` entry-point group in ``pyproject.toml``, exactly
as a third-party plugin would be; the core never imports these modules by name.
"""

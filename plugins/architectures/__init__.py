"""Bundled soft-sharing architectures (LibMTL's ``architecture`` package), as model transforms."""

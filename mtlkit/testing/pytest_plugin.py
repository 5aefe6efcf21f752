"""pytest plugin of the property-testing kit (registered through the pytest11 entry point)."""

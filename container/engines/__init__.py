"""Serving engines: thin adapters over mldeploy.container.protocol."""

"""Deployment targets, one package each; loaded by name through the ``mldeploy.targets``
entry points, never imported by the core directly."""

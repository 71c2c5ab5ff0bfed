"""The SageMaker-compatible serving container: protocol, loader, engines, image builder."""

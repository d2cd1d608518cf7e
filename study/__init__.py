"""The service: configuration, trainer, search, workers, CLI."""

"""Optuna storage construction (journal file or Postgres) and artifacts."""

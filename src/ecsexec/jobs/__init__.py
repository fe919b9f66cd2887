"""Rundeck-style jobs: job files, option and context expansion, and the step executor."""

"""``python -m ecsexec.sandbox up ...``: the sandbox commands alone (what ``up --detach`` runs)."""

from ecsexec.cli.sandbox import run

run()

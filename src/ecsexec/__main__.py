"""``python -m ecsexec``."""

from ecsexec.cli.main import main

main()

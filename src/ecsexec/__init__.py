"""ecsexec: run commands in Amazon ECS containers through ECS Exec, natively."""

from ecsexec.errors import EcsexecError

__version__ = "0.1.0"

__all__ = ["EcsexecError", "__version__"]

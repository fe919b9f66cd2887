"""Run a command on the web service's containers and print each one's outcome.

Uses the same configuration as the ``ecsexec`` command (``ecsexec.toml``, ``ECSEXEC_*``
and ``AWS_*`` variables). Try it on the sandbox:

    ecsexec sandbox up --detach && eval "$(ecsexec sandbox env)"
    python examples/library/run_web.py
"""

import asyncio

import ecsexec


async def main() -> int:
    async with ecsexec.Client() as client:  # same configuration lookup as the CLI
        result = await client.run("ECS:Service-Name: web", "echo hi; exit 3")
        for r in result:  # one record per node, in rank order
            print(r.node, r.status, r.exit_code, r.output)  # output is bytes
        print(result.exit_status)  # 1: a command exited non-zero
        return result.exit_status


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))

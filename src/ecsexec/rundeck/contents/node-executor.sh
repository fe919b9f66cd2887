#!/bin/sh
# Rundeck NodeExecutor (docs/rundeck-plugin.md §5): runs RD_EXEC_COMMAND under sh -c in the
# container the node's ECS:* attributes name, output streamed line by line as it comes (the
# job log is line-based), exiting with the command's own exit code. The command reaches ecsexec in its environment, never on a
# command line; exec, so that Rundeck's SIGTERM on abort reaches ecsexec, which then ends
# the session.
. "$(dirname "$0")/ecsexec-env.sh"

cluster=$(ecsexec_node_value ECS:Cluster-ARN "${RD_NODE_ECS_CLUSTER_ARN:-}") || exit
task=$(ecsexec_node_value ECS:Task-ARN "${RD_NODE_ECS_TASK_ARN:-}") || exit
container=$(ecsexec_node_value ECS:Container-Name "${RD_NODE_ECS_CONTAINER_NAME:-}") || exit
set -- run --quiet --pass-exit-code --line-buffered --yes --command-env RD_EXEC_COMMAND \
    --timeout "${RD_CONFIG_TIMEOUT:-86400}" \
    --cluster "$cluster" --task "$task" --container "$container"
if [ -n "${RD_NODE_ECS_REGION:-}" ]; then
    set -- "$@" --region "$RD_NODE_ECS_REGION"
fi
exec "$ECSEXEC_BIN" "$@" </dev/null

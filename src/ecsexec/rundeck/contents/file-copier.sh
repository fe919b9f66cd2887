#!/bin/sh
# Rundeck FileCopier (docs/rundeck-plugin.md §6): copies RD_FILE_COPY_FILE to
# RD_FILE_COPY_DESTINATION in the node's container with `ecsexec cp`, which prints the
# remote path as the first line of stdout (a destination ending in / gets the file's name).
. "$(dirname "$0")/ecsexec-env.sh"

cluster=$(ecsexec_node_value ECS:Cluster-ARN "${RD_NODE_ECS_CLUSTER_ARN:-}") || exit
task=$(ecsexec_node_value ECS:Task-ARN "${RD_NODE_ECS_TASK_ARN:-}") || exit
container=$(ecsexec_node_value ECS:Container-Name "${RD_NODE_ECS_CONTAINER_NAME:-}") || exit
[ -n "${RD_FILE_COPY_FILE:-}" ] || ecsexec_fail "RD_FILE_COPY_FILE is not set"
[ -n "${RD_FILE_COPY_DESTINATION:-}" ] || ecsexec_fail "RD_FILE_COPY_DESTINATION is not set"
# --task/--container: one DescribeTasks, no listing of the cluster on every copy.
set -- cp --yes --print-path --cluster "$cluster" --task "$task" --container "$container"
if [ -n "${RD_NODE_ECS_REGION:-}" ]; then
    set -- "$@" --region "$RD_NODE_ECS_REGION"
fi
exec "$ECSEXEC_BIN" "$@" "$RD_FILE_COPY_FILE" ":$RD_FILE_COPY_DESTINATION" </dev/null

#!/bin/sh
# Rundeck ResourceModelSource (docs/rundeck-plugin.md §7): prints the ECS containers of
# one region as resourcejson (docs/ecs-nodes.md §5), filtered as the source is configured.
. "$(dirname "$0")/ecsexec-env.sh"

set -f # cluster names are split on commas below, never globbed
set -- nodes --format json
if [ -n "${RD_CONFIG_REGION:-}" ]; then
    set -- "$@" --region "$RD_CONFIG_REGION"
fi
old_ifs=$IFS
IFS=,
for cluster in ${RD_CONFIG_CLUSTERS:-}; do
    IFS=$old_ifs
    cluster=${cluster#"${cluster%%[! ]*}"}
    cluster=${cluster%"${cluster##*[! ]}"}
    if [ -n "$cluster" ]; then
        set -- "$@" --cluster "$cluster"
    fi
done
IFS=$old_ifs
set -- "$@" --filter-behavior "${RD_CONFIG_FILTER_BEHAVIOR:-include}"
[ -z "${RD_CONFIG_SERVICE_NAMES:-}" ] || set -- "$@" --service-name "$RD_CONFIG_SERVICE_NAMES"
[ -z "${RD_CONFIG_TASK_DEFINITION_NAMES:-}" ] ||
    set -- "$@" --task-definition-name "$RD_CONFIG_TASK_DEFINITION_NAMES"
[ -z "${RD_CONFIG_CONTAINER_NAMES:-}" ] ||
    set -- "$@" --container-name "$RD_CONFIG_CONTAINER_NAMES"
[ -z "${RD_CONFIG_TAGS:-}" ] || set -- "$@" --tag "$RD_CONFIG_TAGS"
exec "$ECSEXEC_BIN" "$@" </dev/null

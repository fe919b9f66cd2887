# Sourced by the plugin's scripts: the environment `ecsexec` runs with, from the plugin's
# properties (docs/rundeck-plugin.md §3-§4). Secrets travel only in the environment, never
# on a command line, and are never printed; nothing here uses `set -x`.

# The Rundeck Key Storage secret arrives as its value (STORAGE_PATH_AUTOMATIC_READ); keep
# a copy for AWS_SECRET_ACCESS_KEY and drop every RD_* variable that holds it, so the
# child's environment has it once.
ecsexec_secret=${RD_CONFIG_SECRET_KEY:-}
unset RD_CONFIG_SECRET_KEY RD_NODEEXECUTOR_SECRET_KEY RD_FILECOPIER_SECRET_KEY \
    RD_RESOURCEMODELSOURCE_SECRET_KEY

ecsexec_fail() {
    printf 'ecsexec plugin: %s\n' "$1" >&2
    exit 2
}

ECSEXEC_BIN=${RD_CONFIG_ECSEXEC_PATH:-ecsexec}
case $ECSEXEC_BIN in
*/*) [ -x "$ECSEXEC_BIN" ] || ecsexec_fail "ecsexec_path $ECSEXEC_BIN is not an executable file" ;;
*) command -v "$ECSEXEC_BIN" >/dev/null 2>&1 ||
    ecsexec_fail "$ECSEXEC_BIN is not on PATH ($PATH); install ecsexec or set ecsexec_path" ;;
esac

provider=${RD_CONFIG_CREDENTIAL_PROVIDER:-default}
case $provider in
default | instance | container) ;;
*) ecsexec_fail "credential_provider must be default, instance or container, not '$provider'" ;;
esac
if [ -n "${RD_CONFIG_ACCESS_KEY_ID:-}" ] || [ -n "$ecsexec_secret" ]; then
    [ -n "${RD_CONFIG_ACCESS_KEY_ID:-}" ] ||
        ecsexec_fail "secret_key is set but access_key_id is not; they go together"
    [ -n "$ecsexec_secret" ] ||
        ecsexec_fail "access_key_id is set but secret_key is empty (is the Key Storage path readable?)"
    [ "$provider" = default ] ||
        ecsexec_fail "access_key_id/secret_key cannot be combined with credential_provider $provider"
    # botocore's default chain takes keys from the environment first; nothing of the
    # server's own profile or session may mix in.
    AWS_ACCESS_KEY_ID=$RD_CONFIG_ACCESS_KEY_ID
    AWS_SECRET_ACCESS_KEY=$ecsexec_secret
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    unset AWS_SESSION_TOKEN AWS_SECURITY_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE
fi
unset ecsexec_secret
ECSEXEC_CREDENTIAL_PROVIDER=$provider
export ECSEXEC_CREDENTIAL_PROVIDER
if [ -n "${RD_CONFIG_ASSUME_ROLE_ARN:-}" ]; then
    ECSEXEC_ASSUME_ROLE_ARN=$RD_CONFIG_ASSUME_ROLE_ARN
    export ECSEXEC_ASSUME_ROLE_ARN
fi
if [ -n "${RD_CONFIG_EXTERNAL_ID:-}" ]; then
    ECSEXEC_EXTERNAL_ID=$RD_CONFIG_EXTERNAL_ID
    export ECSEXEC_EXTERNAL_ID
fi
# Rundeck keeps each execution's log; ecsexec's own history stays off unless the server
# turns it on (ECSEXEC_HISTORY in Rundeck's environment).
ECSEXEC_HISTORY=${ECSEXEC_HISTORY:-off}
export ECSEXEC_HISTORY

# ecsexec_node_value NAME VALUE: VALUE, or a configuration error naming the node attribute.
ecsexec_node_value() {
    [ -n "$2" ] || ecsexec_fail "node ${RD_NODE_NAME:-?} has no $1 attribute: it is not an ECS container node (ecsexec-ecs-source provides them)"
    printf '%s' "$2"
}

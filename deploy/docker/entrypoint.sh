#!/bin/sh
# stockflow image entrypoint: run a service or worker by name, the one-shot init, or the CLI.
#   <service>      catalog | stock | order | fulfillment | accounting | replenishment (worker)
#                  -> python -m stockflow.runtime.serve <service> --port $STOCKFLOW_HTTP_PORT
#   init [FLAGS]   -> python -m stockflow.runtime.bootstrap   (roles, schemas, topics; idempotent;
#                     --scram-users --acls: Kafka users and ACLs, as the Kafka super user)
#   cli ARGS...    -> stockflow ARGS...                        (operator CLI)
#   healthcheck    -> exit 0 when http://127.0.0.1:$STOCKFLOW_HTTP_PORT/healthz answers 200
#   help           -> this text
# Anything else is run as a command when it exists (e.g. `sh`, `python`), otherwise it is an error.
set -eu

SERVICES="catalog stock order fulfillment accounting"
# Workers run part of a service beside it (stockflow.runtime.worker): the serve module knows
# which service's schema each one uses.
WORKERS="replenishment"
PORT="${STOCKFLOW_HTTP_PORT:-8080}"

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

cmd="${1:-help}"
[ "$#" -gt 0 ] && shift

for service in $SERVICES; do
    if [ "$cmd" = "$service" ]; then
        export STOCKFLOW_SERVICE="$service"
        export STOCKFLOW_HTTP_PORT="$PORT"
        exec python -m stockflow.runtime.serve "$service" --port "$PORT" "$@"
    fi
done
for worker in $WORKERS; do
    if [ "$cmd" = "$worker" ]; then
        export STOCKFLOW_HTTP_PORT="$PORT"
        exec python -m stockflow.runtime.serve "$worker" --port "$PORT" "$@"
    fi
done

case "$cmd" in
    init|bootstrap)
        exec python -m stockflow.runtime.bootstrap "$@"
        ;;
    cli|stockflow)
        exec stockflow "$@"
        ;;
    healthcheck)
        exec python -c 'import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)' "http://127.0.0.1:${PORT}/healthz"
        ;;
    help|-h|--help)
        usage
        ;;
    *)
        if command -v "$cmd" >/dev/null 2>&1; then
            exec "$cmd" "$@"
        fi
        echo "stockflow: unknown command '$cmd' (services: $SERVICES; workers: $WORKERS; or init, cli, healthcheck, help)" >&2
        exit 64
        ;;
esac

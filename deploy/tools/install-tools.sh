#!/usr/bin/env bash
# Install the deploy validation tools that are not Python packages, built from source with the Go
# toolchain (modules from the Go module proxy), into a cache outside git:
#
#   helm            helm template/lint for deploy/helm/stockflow (tests/deploy)
#   docker-compose  `docker-compose config`: the real Compose parser/validator; needs no engine
#
# Idempotent: a tool already present at the pinned version is skipped. Used by `make tools`.
#   STOCKFLOW_TOOLS_DIR   where to install (default ${XDG_CACHE_HOME:-~/.cache}/stockflow/tools)
#   install-tools.sh --print-dir   print that directory and exit
#
# Build time on the 2-core reference machine from empty Go module and build caches: about 6.5 min
# in all (helm 1.5-4 min, docker-compose 2.5 min); 0.1 s when both are already installed.
#
# Other validators come from elsewhere: hadolint (Dockerfile) is a PyPI package in
# requirements.txt, kubernetes-validate too; the Compose JSON schema is vendored next to this
# script (deploy/tools/compose-spec.json, from the compose-spec/compose-go module at
# COMPOSE_SCHEMA_VERSION below; refresh with `install-tools.sh --update-compose-schema`).
set -euo pipefail

HELM_VERSION=v3.22.0
# Kubernetes version helm assumes without --kube-version: helm's Makefile derives it from the
# k8s.io/client-go it builds against (v0.37 for helm v3.22.0, i.e. Kubernetes 1.37).
HELM_K8S_MAJOR=1
HELM_K8S_MINOR=37
COMPOSE_VERSION=v2.40.3
COMPOSE_SCHEMA_VERSION=v2.16.2

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS_DIR="${STOCKFLOW_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/stockflow/tools}"
BIN="$TOOLS_DIR/bin"

log() { printf '[tools] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_go() {
    command -v go >/dev/null 2>&1 \
        || die "the Go toolchain is needed to build $1 (install Go 1.24+ and re-run \`make tools\`)"
}

# link NAME TARGET: point $BIN/NAME at TARGET (atomically).
link() {
    mkdir -p "$BIN"
    ln -sfn "$2" "$BIN/.$1.tmp"
    mv -Tf "$BIN/.$1.tmp" "$BIN/$1"
}

install_helm() {
    local dir="$TOOLS_DIR/helm-$HELM_VERSION"
    if [[ -x "$dir/helm" ]] && [[ "$("$dir/helm" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; then
        link helm "$dir/helm"
        log "helm $HELM_VERSION already installed ($BIN/helm)"
        return
    fi
    need_go helm
    log "building helm $HELM_VERSION from the Go module proxy (2-4 minutes on 2 cores)"
    local start=$SECONDS
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    GOBIN="$dir.tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath -ldflags "-s -w \
        -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
        -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_K8S_MAJOR \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_K8S_MINOR \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_K8S_MAJOR \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_K8S_MINOR" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    link helm "$dir/helm"
    log "helm $HELM_VERSION installed in $((SECONDS - start))s ($BIN/helm)"
}

install_compose() {
    local dir="$TOOLS_DIR/compose-$COMPOSE_VERSION"
    if [[ -x "$dir/docker-compose" ]] && "$dir/docker-compose" version --short 2>/dev/null | grep -qx "${COMPOSE_VERSION#v}"; then
        link docker-compose "$dir/docker-compose"
        log "docker-compose $COMPOSE_VERSION already installed ($BIN/docker-compose)"
        return
    fi
    need_go docker-compose
    log "building docker-compose $COMPOSE_VERSION from the Go module proxy (2-3 minutes on 2 cores)"
    local start=$SECONDS
    # `go install pkg@version` refuses compose's go.mod (it has exclude directives), so build it
    # from a throw-away module that requires it.
    local work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    (
        cd "$work"
        go mod init stockflow.invalid/compose-build >/dev/null 2>&1
        printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/docker/compose/v2/cmd"\n' > tools.go
        go get "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION" >/dev/null 2>&1 \
            || go get "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION"
        mkdir -p "$dir.tmp"
        CGO_ENABLED=0 go build -trimpath \
            -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
            -o "$dir.tmp/docker-compose" github.com/docker/compose/v2/cmd
    )
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    link docker-compose "$dir/docker-compose"
    log "docker-compose $COMPOSE_VERSION installed in $((SECONDS - start))s ($BIN/docker-compose)"
}

update_compose_schema() {
    need_go "the compose schema"
    local dir
    dir="$(go mod download -json "github.com/compose-spec/compose-go/v2@$COMPOSE_SCHEMA_VERSION" \
        | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    [[ -f "$dir/schema/compose-spec.json" ]] || die "no schema/compose-spec.json in $dir"
    cp "$dir/schema/compose-spec.json" "$HERE/compose-spec.json"
    log "vendored compose-spec.json from compose-go $COMPOSE_SCHEMA_VERSION"
}

case "${1:-}" in
    --print-dir) echo "$TOOLS_DIR"; exit 0 ;;
    --update-compose-schema) update_compose_schema; exit 0 ;;
    "") ;;
    *) die "usage: $0 [--print-dir | --update-compose-schema]" ;;
esac

mkdir -p "$TOOLS_DIR"
install_helm
install_compose
log "tools in $BIN: $(ls "$BIN" | tr '\n' ' ')"

#!/usr/bin/env bash
# `make k8s-deploy`: checks what the deployment needs, applies k8s/ and waits for the rollout.
# Fails at once, saying what to do, when kubectl, the cluster, agent-sandbox, the JWT Secret or
# the agent client key Secret is missing. PICO_ROLLOUT_TIMEOUT (default 180s; 0 = do not wait) bounds the wait.
set -euo pipefail
cd "$(dirname "$0")/.."
ns=pico-apiserver
fail() {
  echo "k8s-deploy: $*" >&2
  exit 1
}
command -v kubectl >/dev/null || fail "kubectl is missing (Debian package kubernetes-client)"
kubectl version >/dev/null 2>&1 ||
  fail "no cluster answers (kubectl version failed): create one (kind create cluster) or set KUBECONFIG"
kubectl get --raw /apis/agents.x-k8s.io >/dev/null 2>&1 ||
  fail "the cluster does not serve agents.x-k8s.io: install agent-sandbox first (k8s/README.md, step 2)"
kubectl apply -f k8s/00-namespace.yaml
kubectl -n "$ns" get secret pico-jwt >/dev/null 2>&1 ||
  fail "Secret $ns/pico-jwt is missing: kubectl -n $ns create secret generic pico-jwt --from-literal=secret=\"\$(openssl rand -hex 32)\""
kubectl -n "$ns" get secret pico-agent-client-key >/dev/null 2>&1 ||
  fail "Secret $ns/pico-agent-client-key is missing: ssh-keygen -q -t ed25519 -N '' -C pico-apiserver -f key && kubectl -n $ns create secret generic pico-agent-client-key --from-file=key=key && rm key key.pub"
kubectl apply -f k8s/
timeout=${PICO_ROLLOUT_TIMEOUT:-180s}
if [ "$timeout" != 0 ]; then
  kubectl -n "$ns" rollout status deployment/pico-apiserver --timeout="$timeout"
fi

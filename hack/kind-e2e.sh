#!/bin/sh
# End to end on kind: a cluster, Multus (thick), our DaemonSet, the node-targeted testinfra
# suite against a worker, and a real pod with two NICs through Multus.
# Needs docker, kind, kubectl, podman (or docker) and network access; it cannot run on the
# development machine (no Docker engine there). The suite and the NIC-making code are the same
# ones `make test` runs locally (tests/e2e).
set -eu
cd "$(dirname "$0")/.."
CLUSTER=${CLUSTER:-amd-host-device}
IMAGE=${IMAGE:-localhost/amd-host-device:0.2.0}
PROBE_IMAGE=${PROBE_IMAGE:-localhost/amd-host-device-probe:bookworm}
MULTUS=${MULTUS:-https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/v4.1.0/deployments/multus-daemonset-thick.yml}
WORKER="$CLUSTER-worker"
PY=.venv/bin/python
tmp=$(mktemp -d)
cleanup() { kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; rm -rf "$tmp"; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "cluster"
printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n' \
  > "$tmp/kind.yaml"
kind create cluster --name "$CLUSTER" --config "$tmp/kind.yaml" --wait 120s

step "images"
for image in "$IMAGE" "$PROBE_IMAGE"; do
  archive="$tmp/$(echo "$image" | tr '/:' '__').tar"
  if command -v podman >/dev/null; then podman save -o "$archive" "$image"; else docker save -o "$archive" "$image"; fi
  kind load image-archive "$archive" --name "$CLUSTER"
done

step "Multus (thick) and amd-host-device"
kubectl apply -f "$MULTUS"
kubectl -n kube-system rollout status ds/kube-multus-ds --timeout=300s
kubectl label node "$WORKER" feature.node.kubernetes.io/pci-1dd8.present=true --overwrite
# kind's "NICs" are veths with no PCI parent: the node policy must opt in (allowNonPciDevices).
sed 's/"allowNonPciDevices": false/"allowNonPciDevices": true/' hack/deploy/daemonset.yaml \
  | kubectl apply -f -
kubectl -n kube-system rollout status ds/amd-host-device --timeout=300s
docker exec "$WORKER" sh -c 'command -v ping >/dev/null || (apt-get update -qq && apt-get install -y -qq iputils-ping)'

step "the node-targeted suite against $WORKER"
.venv/bin/pytest -q tests/e2e --hosts="docker://$WORKER" \
  --plugin=/opt/cni/bin/amd-host-device --cni-path=/opt/cni/bin

step "a real pod with two NICs through Multus"
nics=$($PY -m tests.support.nodeenv "docker://$WORKER" kind 2)
echo "$nics"
n1=$(echo "$nics" | $PY -c 'import json,sys; print(json.load(sys.stdin)[0]["name"])')
n2=$(echo "$nics" | $PY -c 'import json,sys; print(json.load(sys.stdin)[1]["name"])')
for n in "$n1" "$n2"; do
  kubectl apply -f - <<YAML
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: nad-$n}
spec:
  config: '{"cniVersion": "1.0.0", "name": "nad-$n", "type": "amd-host-device", "device": "$n"}'
YAML
done
kubectl apply -f - <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: network-workload
  annotations: {k8s.v1.cni.cncf.io/networks: "nad-$n1, nad-$n2"}
spec:
  nodeName: $WORKER
  containers:
    - {name: app, image: $PROBE_IMAGE, imagePullPolicy: IfNotPresent, command: [sleep, infinity]}
YAML
kubectl wait --for=condition=Ready pod/network-workload --timeout=180s
kubectl exec network-workload -- ip -br addr show dev net1 | grep -q 10.
kubectl exec network-workload -- ip -br addr show dev net2 | grep -q 10.
kubectl delete pod network-workload --wait=true
docker exec "$WORKER" ip -br addr show dev "$n1" | grep -q UP
docker exec "$WORKER" ip -br addr show dev "$n2" | grep -q UP
step "kind end to end: ok"

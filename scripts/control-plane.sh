#!/usr/bin/env bash
# A real Kubernetes control plane as local processes, for tests and demos:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes
# that get pods to Running). Everything listens on 127.0.0.1 only.
#
#   scripts/control-plane.sh run   --dir DIR [--watch-pid PID]   # foreground
#   scripts/control-plane.sh start --dir DIR                     # background
#   scripts/control-plane.sh stop  --dir DIR
#
# `run` writes DIR/kubeconfig, then DIR/ready (containing the kubeconfig path) once
# the cluster is usable, and tears everything down on exit, on INT/TERM/HUP, or when
# the --watch-pid process disappears. A detached reaper process cleans up even if
# this script itself is SIGKILLed. Component logs: DIR/logs/<name>.log.
# Set VIGIL_CP_KEEP_DIR=1 to keep DIR (logs, certs, etcd data) after teardown.
#
# Pods on kwok's nodes, for tests (stages and logs: write_kwok_files):
# - A scheduled pod goes Running at once and stays Running until it is deleted.
# - Annotation vigil-test/exit-code: "N" (an integer): once Running, the pod ends after
#   vigil-test/run-seconds: "S" seconds (default 1; a fraction or a Go duration like "2m"
#   works too): every container terminated with exitCode N, the pod Succeeded (N = 0) or
#   Failed. The real Job controller then marks its Job Complete or Failed. Pods without the
#   annotation never end, Job pods included (kwok's own stages would end those at once).
# - Logs, as `kubectl logs` and the API's pods/log read them: a container named
#   vigil-log-<k>, k = 0..9, serves DIR/pod-logs/<k>.log; every other container serves
#   DIR/pod.log. The files start empty and are read at each request, in the CRI log format
#   (one line each: `2026-01-02T03:04:05.000000000Z stdout F <text>`). Tests share them:
#   append lines with a marker of your own, never truncate.
set -euo pipefail

SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF=$SELF_DIR/$(basename "${BASH_SOURCE[0]}")

# Everything this script may create inside DIR; teardown removes exactly these, so a
# mistyped --dir can never wipe unrelated files.
OWNED=(pid reaper.pid pids bin-dir ready ready.tmp kubeconfig kubeconfig.tmp pki etcd logs kwok.yaml nodes.yaml pod.log pod-logs)

# The k of the per-container log files DIR/pod-logs/<k>.log (see the top of this file).
LOG_KEYS=(0 1 2 3 4 5 6 7 8 9)

log() { printf '[control-plane %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2 || true; }

usage() {
  sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# True if PID exists and is not a zombie. (kill -0 succeeds on zombies.)
pid_alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}

# True if any non-zombie process is still in process group PGID.
group_alive() {
  ps -eo pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'
}

# SIGTERM a process group, give it a few seconds, then SIGKILL it.
kill_group() {
  local name=$1 pgid=$2 i
  group_alive "$pgid" || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    group_alive "$pgid" || return 0
    sleep 0.1
  done
  log "$name did not stop after SIGTERM; sending SIGKILL"
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

# Kills every component listed in DIR/pids, newest first (reverse start order).
kill_components() {
  local dir=$1 lines=() i name pgid
  [[ -f $dir/pids ]] || return 0
  mapfile -t lines <"$dir/pids"
  for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
    read -r name pgid <<<"${lines[i]}"
    [[ -n ${pgid:-} ]] || continue
    # A stale pids file must not make us kill a stranger that reuses the pid: every
    # component has DIR in its command line. (While any member of a process group
    # lives, its id cannot be reused, so a dead leader needs no such check.)
    if pid_alive "$pgid" && [[ $(ps -ww -o args= -p "$pgid" 2>/dev/null) != *"$dir/"* ]]; then
      continue
    fi
    kill_group "$name" "$pgid"
    wait "$pgid" 2>/dev/null || true # reap it if it is our child
  done
}

remove_owned() {
  local dir=$1 keep_logs=${2:-0} e
  [[ ${VIGIL_CP_KEEP_DIR:-0} == 1 ]] && return 0
  for e in "${OWNED[@]}"; do
    [[ $keep_logs == 1 && $e == logs ]] && continue
    rm -rf "${dir:?}/$e"
  done
  rmdir "$dir" 2>/dev/null || true
}

parse_args() {
  DIR='' WATCH_PID=''
  while (($#)); do
    case $1 in
      --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
      --dir=*) DIR=${1#*=}; shift ;;
      --watch-pid) WATCH_PID=${2:?--watch-pid needs a value}; shift 2 ;;
      --watch-pid=*) WATCH_PID=${1#*=}; shift ;;
      *) log "unknown argument: $1"; usage ;;
    esac
  done
  [[ -n $DIR ]] || { log "--dir is required"; usage; }
  if [[ -n $WATCH_PID && ! $WATCH_PID =~ ^[0-9]+$ ]]; then
    log "--watch-pid must be a process id"; exit 2
  fi
}

# Refuses directories that hold anything this script did not create, and directories
# whose control plane is still running.
check_dir() {
  local e name ok o
  if [[ -f $DIR/pid ]] && pid_alive "$(<"$DIR/pid")"; then
    log "a control plane is already running in $DIR (pid $(<"$DIR/pid"))"; exit 1
  fi
  shopt -s nullglob dotglob
  for e in "$DIR"/*; do
    name=${e##*/} ok=0
    for o in "${OWNED[@]}"; do [[ $name == "$o" ]] && ok=1; done
    if ((!ok)); then
      log "refusing to use $DIR: it contains $name, which this script did not create"; exit 1
    fi
  done
  shopt -u nullglob dotglob
}

# ---------------------------------------------------------------------------- run

declare -a COMP_NAMES=() COMP_PIDS=()
STARTED_OK=0 FAILED=0 REAPER_PID='' NAP_PID='' BUILD_PID=''

# Sets PORT to a random free loopback port (not via $(...): USED_PORTS must persist).
# Chosen below the kernel's ephemeral range (usually 32768+) so that outgoing
# connections cannot grab it between this check and the bind.
declare -A USED_PORTS=()
PORT=''
free_port() {
  local p
  while :; do
    p=$((10000 + RANDOM % 22000))
    [[ -z ${USED_PORTS[$p]:-} ]] || continue
    if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then continue; fi
    if port_open "$p"; then continue; fi
    USED_PORTS[$p]=1
    PORT=$p
    return
  done
}

# Starts a component in its own session/process group (setsid), so a terminal's ^C
# does not hit it directly and teardown can kill it together with any children.
# In a non-interactive shell the background child is no group leader, so setsid
# does not fork: $! is the component's pid and also its process group id.
start_component() {
  local name=$1; shift
  log "starting $name"
  setsid "$@" </dev/null >"$DIR/logs/$name.log" 2>&1 &
  local pid=$!
  COMP_NAMES+=("$name") COMP_PIDS+=("$pid")
  echo "$name $pid" >>"$DIR/pids"
}

die() {
  FAILED=1
  log "ERROR: $*"
  exit 1
}

# Exits (tearing down) if the --watch-pid process is gone, and dies with the tail
# of the log of any component that has exited. Called by every wait loop.
check_components() {
  local i
  if [[ -n $WATCH_PID ]] && ! pid_alive "$WATCH_PID"; then
    log "watched process $WATCH_PID is gone"
    exit 0
  fi
  for i in "${!COMP_PIDS[@]}"; do
    if ! pid_alive "${COMP_PIDS[i]}"; then
      local name=${COMP_NAMES[i]}
      log "$name exited unexpectedly; last lines of $DIR/logs/$name.log:"
      tail -n 40 "$DIR/logs/$name.log" >&2 || true
      die "$name died"
    fi
  done
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local what=$1 timeout=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    check_components
    ((SECONDS - start < timeout)) || die "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

teardown() {
  local rc=$?
  trap '' INT TERM HUP
  if [[ -n $NAP_PID ]]; then kill "$NAP_PID" 2>/dev/null || true; fi
  # A startup that failed (not one that was asked to stop) keeps its logs.
  case $rc in 0 | 129 | 130 | 143) ;; *) ((STARTED_OK)) || FAILED=1 ;; esac
  if ((${#COMP_PIDS[@]})); then log "stopping control plane in $DIR"; fi
  rm -f "$DIR/ready"
  if [[ -n $BUILD_PID ]]; then kill_group k8s-bins.sh "$BUILD_PID"; fi
  kill_components "$DIR"
  remove_owned "$DIR" "$FAILED"
  if ((FAILED)) && [[ -d $DIR/logs ]]; then log "component logs kept in $DIR/logs"; fi
  # The reaper goes last: if we are SIGKILLed during teardown, it finishes the job.
  if [[ -n $REAPER_PID ]]; then kill -TERM "$REAPER_PID" 2>/dev/null || true; fi
  ((STARTED_OK)) && log "stopped"
  exit "$rc"
}

gen_certs() {
  local pki=$DIR/pki adv=$1
  mkdir -p "$pki"
  # EC keys: much faster to generate than RSA, and accepted by every component.
  local key='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'
  # shellcheck disable=SC2086
  openssl req -x509 $key -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 \
    -subj /CN=vigil-test-ca 2>/dev/null
  # shellcheck disable=SC2086
  openssl req -new $key -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" \
    -subj /CN=kube-apiserver 2>/dev/null
  local sans="DNS:localhost,IP:127.0.0.1,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default"
  sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  [[ $adv == 127.0.0.1 ]] || sans+=",IP:$adv"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -out "$pki/apiserver.crt" -days 3650 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans") 2>/dev/null
  # system:masters is bound to cluster-admin; RBAC still applies to everyone else.
  # shellcheck disable=SC2086
  openssl req -new $key -keyout "$pki/admin.key" -out "$pki/admin.csr" \
    -subj "/O=system:masters/CN=vigil-admin" 2>/dev/null
  openssl x509 -req -in "$pki/admin.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -out "$pki/admin.crt" -days 3650 \
    -extfile <(printf 'extendedKeyUsage=clientAuth\n') 2>/dev/null
  # kwok's kubelet endpoint (pod logs): the apiserver does not verify it (no
  # --kubelet-certificate-authority), so a self-signed certificate will do.
  # shellcheck disable=SC2086
  openssl req -x509 $key -keyout "$pki/kwok.key" -out "$pki/kwok.crt" -days 3650 \
    -subj /CN=kwok -addext subjectAltName=IP:127.0.0.1 2>/dev/null
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
}

write_kubeconfig() {
  local pki=$DIR/pki server=$1
  local tmp=$DIR/kubeconfig.tmp
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: vigil-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: vigil-admin
  user:
    client-certificate-data: $(base64 -w0 <"$pki/admin.crt")
    client-key-data: $(base64 -w0 <"$pki/admin.key")
contexts:
- name: vigil-test
  context:
    cluster: vigil-test
    user: vigil-admin
current-context: vigil-test
EOF
  mv "$tmp" "$DIR/kubeconfig"
}

# The apiserver wants an address to advertise. With --bind-address=127.0.0.1 it
# otherwise looks for the default route's interface, which offline machines lack.
advertise_address() {
  local a
  a=$(ip -4 -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }') || true
  [[ -n $a ]] || a=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | grep -v '^127\.' | head -n1) || true
  echo "${a:-127.0.0.1}"
}

write_kwok_files() {
  # An explicit configuration, so a user's ~/.kwok/kwok.yaml is never read. Node leases
  # (renewed every 10 s) are the nodes' heartbeat: the built-in status heartbeat comes every
  # 20-45 s, and a late first one let the node lifecycle controller's 50 s grace period
  # lapse and mark every pod NotReady, which kwok never undoes. Nodes keep kwok's built-in
  # stages (Ready at once); pods get the stages below (see the top of this file).
  #
  # Logs: a pod's container named vigil-log-<k> (k = 0..9) serves DIR/pod-logs/<k>.log;
  # every other container serves DIR/pod.log. (kwok v0.7.0 selects ClusterLogs by namespace
  # and pod name only, not by label, so the container name picks the file.) All are served
  # through the apiserver like a kubelet's, so that tests read pod logs the way Vigil does.
  : >"$DIR/pod.log"
  mkdir -p "$DIR/pod-logs"
  local k
  for k in "${LOG_KEYS[@]}"; do : >"$DIR/pod-logs/$k.log"; done
  {
    cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  nodeLeaseDurationSeconds: 40
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: all-pods
spec:
  selector: {}
  logs:
EOF
    # The first entry naming a container wins; the one without containers is the default.
    for k in "${LOG_KEYS[@]}"; do
      printf '  - containers: [vigil-log-%s]\n    logsFile: %s\n' "$k" "$DIR/pod-logs/$k.log"
    done
    printf '  - logsFile: %s\n' "$DIR/pod.log"
    # Quoted: kwok's Go templates use $, which the shell must not expand.
    cat <<'EOF'
---
# Pod stages. Giving any replaces all of kwok's built-in pod stages, so pod-ready and
# pod-delete are kwok v0.7.0's own (kustomize/stage/pod/fast), unchanged. Its third,
# pod-complete (every Job-owned pod Succeeded the moment it runs), is left out on purpose:
# a pod ends only when its vigil-test/exit-code annotation says so (stage pod-exit).
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.podIP'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}

      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    finalizers:
      empty: true
    delete: true
---
# A Running pod annotated vigil-test/exit-code: "N" (an integer) ends vigil-test/run-seconds:
# "S" seconds later (default 1; S may have a fraction, or be a Go duration such as "2m"):
# every container terminated with exit code N, the pod Succeeded if N is 0 and Failed
# otherwise, as a kubelet reports it. The delay starts again whenever the pod changes while
# it runs.
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-exit
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.metadata.annotations["vigil-test/exit-code"]'
      operator: 'Exists'
  delay:
    durationMilliseconds: 1000
    durationFrom:
      jq:
        expression: '.metadata.annotations["vigil-test/run-seconds"] | if test("^[0-9.]+$") then . + "s" else . end'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $code := index .metadata.annotations "vigil-test/exit-code" | trim | atoi }}
      {{ $ok := eq $code 0 }}
      {{ $started := or .status.startTime $now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodCompleted
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ $code }}
            finishedAt: {{ $now | Quote }}
            reason: {{ if $ok }}Completed{{ else }}Error{{ end }}
            startedAt: {{ $started | Quote }}
      {{ end }}
      phase: {{ if $ok }}Succeeded{{ else }}Failed{{ end }}
EOF
  } >"$DIR/kwok.yaml"
  # Fake nodes. No taints, on purpose: any workload (e.g. a Helm chart's Deployment)
  # schedules without tolerations. Nodes may carry their status on create.
  : >"$DIR/nodes.yaml"
  local i
  for i in 0 1; do
    cat >>"$DIR/nodes.yaml" <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  done
}

# Started detached by `run`: if `run` dies without tearing down (SIGKILL), kill the
# components it recorded in DIR/pids and clean DIR.
cmd_reaper() {
  local dir=$1 main=$2
  local nap=''
  trap '[[ -z $nap ]] || kill "$nap" 2>/dev/null; exit 0' TERM INT HUP
  while pid_alive "$main"; do sleep 1 & nap=$!; wait "$nap" || true; done
  trap '' TERM INT HUP
  kill_components "$dir"
  if [[ -f $dir/pid && $(<"$dir/pid") == "$main" ]]; then
    log "control plane process $main vanished; cleaned up its components"
    remove_owned "$dir"
  fi
}

cmd_run() {
  parse_args "$@"
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  check_dir
  # Leftovers of an earlier run; `start` may already have opened logs/control-plane.log.
  local e
  for e in "${OWNED[@]}"; do [[ $e == logs ]] || rm -rf "${DIR:?}/$e"; done
  mkdir -p "$DIR/logs"
  find "$DIR/logs" -mindepth 1 -maxdepth 1 ! -name control-plane.log -exec rm -rf {} +
  echo $$ >"$DIR/pid"
  : >"$DIR/pids"

  trap teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  # A caller that stops reading our stderr must not kill us before teardown.
  trap '' PIPE

  setsid "$SELF" __reaper "$DIR" "$$" </dev/null >>"$DIR/logs/reaper.log" 2>&1 &
  REAPER_PID=$!
  echo "$REAPER_PID" >"$DIR/reaper.pid"

  # In the background (own process group), so that a signal or the end of the watched
  # process interrupts even a first, very long build; teardown then stops it too.
  local t0=$SECONDS bins rc=0
  setsid "$SELF_DIR/k8s-bins.sh" </dev/null >"$DIR/bin-dir" &
  BUILD_PID=$!
  while pid_alive "$BUILD_PID"; do
    check_components
    sleep 0.2 & NAP_PID=$!
    wait "$NAP_PID" || true
  done
  wait "$BUILD_PID" || rc=$?
  BUILD_PID=''
  ((rc == 0)) || die "scripts/k8s-bins.sh failed (exit $rc)"
  bins=$(<"$DIR/bin-dir")
  [[ -x $bins/kube-apiserver ]] || die "no kube-apiserver in '$bins'"
  local t1=$SECONDS
  local kubectl=$bins/kubectl

  local adv etcd_port etcd_peer api_port kwok_port
  adv=$(advertise_address)
  free_port; etcd_port=$PORT
  free_port; etcd_peer=$PORT
  free_port; api_port=$PORT
  free_port; kwok_port=$PORT
  log "dir=$DIR advertise-address=$adv etcd=127.0.0.1:$etcd_port apiserver=https://127.0.0.1:$api_port"

  gen_certs "$adv"
  local pki=$DIR/pki

  start_component etcd "$bins/etcd" \
    --name=default \
    --data-dir="$DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" \
    --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="default=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync \
    --log-level=warn
  wait_for "etcd" 60 port_open "$etcd_port"

  # --endpoint-reconciler-type=none: the apiserver listens on loopback only, so the
  # advertised address would be a lie in the `kubernetes` Endpoints; and a loopback
  # address there is rejected by validation.
  start_component kube-apiserver "$bins/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 \
    --secure-port="$api_port" \
    --advertise-address="$adv" \
    --endpoint-reconciler-type=none \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --authorization-mode=RBAC \
    --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP \
    --profiling=false
  write_kubeconfig "https://127.0.0.1:$api_port"
  local kc=$DIR/kubeconfig
  wait_for "kube-apiserver /readyz" 120 "$kubectl" --kubeconfig="$kc" get --raw=/readyz
  log "kube-apiserver ready ($((SECONDS - t1))s)"

  # Secure ports 0: no serving endpoint needed, and no port to collide on.
  start_component kube-controller-manager "$bins/kube-controller-manager" \
    --kubeconfig="$kc" \
    --root-ca-file="$pki/ca.crt" \
    --service-account-private-key-file="$pki/sa.key" \
    --use-service-account-credentials=true \
    --cluster-signing-cert-file="$pki/ca.crt" \
    --cluster-signing-key-file="$pki/ca.key" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port=0 \
    --profiling=false

  start_component kube-scheduler "$bins/kube-scheduler" \
    --kubeconfig="$kc" \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port=0 \
    --profiling=false

  write_kwok_files
  start_component kwok "$bins/kwok" \
    --kubeconfig="$kc" \
    --config="$DIR/kwok.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=10.244.0.1/16 \
    --node-ip=127.0.0.1 \
    --node-port="$kwok_port" \
    --server-address="127.0.0.1:$kwok_port" \
    --tls-cert-file="$pki/kwok.crt" \
    --tls-private-key-file="$pki/kwok.key"

  "$kubectl" --kubeconfig="$kc" apply -f "$DIR/nodes.yaml" >/dev/null
  # Proves kwok is managing the fake nodes.
  wait_for "kwok to mark the fake nodes Ready" 60 \
    "$kubectl" --kubeconfig="$kc" wait --for=condition=Ready node -l type=kwok --timeout=2s
  # Proves kube-controller-manager works (its serviceaccount controller creates it);
  # pods in `default` are rejected until it exists.
  wait_for "the default ServiceAccount" 120 \
    "$kubectl" --kubeconfig="$kc" -n default get serviceaccount default

  echo "$kc" >"$DIR/ready.tmp"
  mv "$DIR/ready.tmp" "$DIR/ready"
  STARTED_OK=1
  log "ready in $((SECONDS - t0))s (binaries $((t1 - t0))s, cluster $((SECONDS - t1))s): export KUBECONFIG=$kc"

  while :; do
    check_components
    # In the background, so that a signal interrupts the wait at once.
    sleep 1 & NAP_PID=$!
    wait "$NAP_PID" || true
  done
}

# -------------------------------------------------------------------------- start/stop

cmd_start() {
  parse_args "$@"
  [[ -z $WATCH_PID ]] || { log "start does not take --watch-pid"; exit 2; }
  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd)
  check_dir
  # Build or locate the binaries in the foreground, so a first build's progress shows.
  "$SELF_DIR/k8s-bins.sh" >/dev/null
  rm -f "$DIR/ready"
  mkdir -p "$DIR/logs"
  setsid nohup "$SELF" run --dir "$DIR" </dev/null >"$DIR/logs/control-plane.log" 2>&1 &
  local pid=$! start=$SECONDS
  log "starting in the background (pid $pid, log $DIR/logs/control-plane.log)"
  while :; do
    if [[ -f $DIR/ready ]]; then break; fi
    if ! pid_alive "$pid"; then
      log "control plane failed to start; its output:"
      cat "$DIR/logs/control-plane.log" >&2 2>/dev/null || true
      exit 1
    fi
    if ((SECONDS - start > 300)); then
      log "timed out waiting for $DIR/ready; stopping it"
      cmd_stop --dir "$DIR"
      exit 1
    fi
    sleep 0.5
  done
  log "ready in $((SECONDS - start))s"
  echo "export KUBECONFIG=$DIR/kubeconfig"
}

cmd_stop() {
  parse_args "$@"
  [[ -d $DIR ]] || { log "$DIR does not exist; nothing to stop"; return 0; }
  DIR=$(cd "$DIR" && pwd)
  local pid='' reaper='' i
  [[ -f $DIR/pid ]] && pid=$(<"$DIR/pid")
  [[ -f $DIR/reaper.pid ]] && reaper=$(<"$DIR/reaper.pid")
  if [[ -z $pid ]] || ! pid_alive "$pid"; then
    log "no control plane running in $DIR"
    # Leftovers of a crashed run: make sure nothing survives.
    kill_components "$DIR"
    remove_owned "$DIR"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    log "control plane $pid did not stop in 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # After a SIGKILL the reaper does the cleanup; wait for it.
  for ((i = 0; i < 300; i++)); do
    [[ -n $reaper ]] && pid_alive "$reaper" || break
    sleep 0.1
  done
  log "stopped"
}

case ${1:-} in
  run) shift; cmd_run "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  __reaper) shift; cmd_reaper "$@" ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# A Docker engine "on another host", for tests of remote engines (DOCKER_HOST=tcp://… and
# ssh://…): a network namespace joined to this one by a veth pair, with a second dockerd
# (the machine's own binary) listening on tcp://REMOTE:2375 inside it.
#   bash scripts/remote-docker.sh start   # prints DOCKER_HOST=tcp://10.200.0.2:2375
#   bash scripts/remote-docker.sh load    # start, then load the base images named in .env
#   bash scripts/remote-docker.sh stop    # dockerd, sshd, the namespace and the veth: all gone
# tests/integration/test_remote_engine.py runs there (CI runs `load` before the tests).
#
# Addresses: DEVSTACK_REMOTE_LOCAL (default 10.200.0.1, this side) and DEVSTACK_REMOTE_ADDR
# (10.200.0.2, the engine's side), a /24. Its data, exec root, pid file and logs live in DIR
# (DEVSTACK_REMOTE_DOCKER_DIR, default /var/tmp/devstack-remote-docker). It runs with
# `--bridge none --iptables=false`, which is safe ONLY inside the namespace (it has no docker0;
# in the host's namespace it would delete the host engine's docker0). User-defined networks
# and published ports (docker-proxy) work; the namespace has no route beyond its /24, so
# the engine cannot pull or reach a package mirror: images come from this machine's engine
# (`docker save | docker -H … load`).
# An sshd (Debian's openssh-server, installed if missing) runs in the namespace too (REMOTE:22, root, a key made
# here) so ssh://root@REMOTE works: DIR/bin/ssh is an `ssh -F DIR/ssh_config` wrapper for
# tests to put first on PATH (the user's own ~/.ssh is never touched). Idempotent.
set -euo pipefail
dir="${DEVSTACK_REMOTE_DOCKER_DIR:-/var/tmp/devstack-remote-docker}"
local_addr="${DEVSTACK_REMOTE_LOCAL:-10.200.0.1}"
remote_addr="${DEVSTACK_REMOTE_ADDR:-10.200.0.2}"
ns=devstack-remote
host="tcp://$remote_addr:2375"

stop_pid() { # FILE: end the process whose pid FILE holds, and wait for it
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

case "${1:-start}" in
stop)
  stop_pid "$dir/sshd.pid"
  stop_pid "$dir/docker.pid"
  ip netns del "$ns" 2>/dev/null || true      # takes its end of the veth pair with it
  ip link del dsr-host 2>/dev/null || true
  exit 0 ;;
start) ;;
load)
  bash "$0" start >/dev/null
  env_file="$(cd "$(dirname "$0")/.." && pwd)/.env"
  for image in $(sed -n 's/^DEVSTACK_\(POSTGRES\|REDIS\|PYTHON\)_IMAGE=//p' "$env_file" 2>/dev/null); do
    docker -H "$host" image inspect "$image" >/dev/null 2>&1 && continue
    echo "loading $image into the remote engine" >&2
    docker save "$image" | docker -H "$host" load -q >&2
  done
  echo "DOCKER_HOST=$host"
  exit 0 ;;
*) echo "usage: $0 start|load|stop" >&2; exit 2 ;;
esac

if docker -H "$host" info >/dev/null 2>&1; then echo "DOCKER_HOST=$host"; exit 0; fi
mkdir -p "$dir/bin"
# the namespace and the veth pair
[ -e "/var/run/netns/$ns" ] || ip netns add "$ns"
if ! ip link show dsr-host >/dev/null 2>&1; then
  ip link add dsr-host type veth peer name dsr-remote
  ip link set dsr-remote netns "$ns"
  ip addr add "$local_addr/24" dev dsr-host
fi
ip link set dsr-host up
ip netns exec "$ns" sh -c "ip addr show dsr-remote | grep -q 'inet $remote_addr/' \
  || ip addr add $remote_addr/24 dev dsr-remote; ip link set dsr-remote up; ip link set lo up"
# the engine: nsenter, not `ip netns exec` (no devices cgroup in that mount namespace)
if [ -f "$dir/docker.pid" ] && ! kill -0 "$(cat "$dir/docker.pid")" 2>/dev/null; then
  rm -f "$dir/docker.pid"   # a killed dockerd leaves it behind and the next one refuses
fi
if [ ! -f "$dir/docker.pid" ]; then
  nohup nsenter --net="/var/run/netns/$ns" dockerd -H "$host" -H "unix://$dir/docker.sock" \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
    --bridge none --iptables=false --ip-masq=false --tls=false \
    > "$dir/dockerd.log" 2>&1 < /dev/null &
fi
# sshd in the namespace, for ssh:// (Debian's openssh-server, installed when missing)
if [ ! -x /usr/sbin/sshd ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server \
    >"$dir/apt.log" 2>&1 || echo "note: no sshd (apt-get failed: see $dir/apt.log); ssh:// not set up" >&2
fi
if [ -x /usr/sbin/sshd ] && ! { [ -f "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; }; then
  [ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
  [ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  mkdir -p /run/sshd
  cat > "$dir/sshd_config" <<EOF
ListenAddress $remote_addr:22
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv DOCKER_HOST=unix://$dir/docker.sock
EOF
  cat > "$dir/ssh_config" <<EOF
Host $remote_addr
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  StrictHostKeyChecking accept-new
  BatchMode yes
EOF
  printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$dir/ssh_config" > "$dir/bin/ssh"
  chmod +x "$dir/bin/ssh"
  nsenter --net="/var/run/netns/$ns" /usr/sbin/sshd -f "$dir/sshd_config" -E "$dir/sshd.log"
fi
for _ in $(seq 1 60); do
  if docker -H "$host" info >/dev/null 2>&1; then echo "DOCKER_HOST=$host"; exit 0; fi
  sleep 0.5
done
echo "the remote engine did not start: $(tail -3 "$dir/dockerd.log")" >&2; exit 1

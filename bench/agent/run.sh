#!/usr/bin/env bash
# pico-agent vs OpenSSH sshd on loopback, measured in the same run:
#   SFTP download and upload of a file (default 1 GiB) and `ssh host true` round trip.
# Usage: bench/agent/run.sh [SIZE_MIB] [ROUNDS]     (needs openssh-server; run as root)
# Prints one line per measurement and the pico/sshd ratios.
set -euo pipefail

SIZE_MIB=${1:-1024}
ROUNDS=${2:-3}
EXEC_N=${EXEC_N:-20}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SSHD=${SSHD:-/usr/sbin/sshd}
SFTP_SERVER=${SFTP_SERVER:-/usr/lib/openssh/sftp-server}

[ -x "$SSHD" ] || { echo "needs $SSHD: apt-get install -y openssh-server" >&2; exit 1; }
cargo build --release -q -p pico-agent --manifest-path "$ROOT/Cargo.toml"
AGENT="$ROOT/target/release/pico-agent"

WORK=$(mktemp -d /tmp/pico-agent-bench.XXXXXX)
AGENT_PID=""; SSHD_PID=""
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$SSHD_PID" ] && kill "$SSHD_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

ssh-keygen -q -N '' -t ed25519 -f "$WORK/host"
ssh-keygen -q -N '' -t ed25519 -f "$WORK/client"
cp "$WORK/client.pub" "$WORK/authorized_keys"
mkdir -p "$WORK/home" "$WORK/data"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$WORK/data/src.bin"

AGENT_PORT=$(free_port)
mkfifo "$WORK/ready"
"$AGENT" serve --listen "127.0.0.1:$AGENT_PORT" --host-key "$WORK/host" \
    --authorized-keys "$WORK/authorized_keys" --home "$WORK/home" > "$WORK/ready" 2> "$WORK/agent.log" &
AGENT_PID=$!
read -r line < "$WORK/ready" || true
[ "$line" = "ready" ] || { cat "$WORK/agent.log"; exit 1; }

SSHD_PORT=$(free_port)
mkdir -p /run/sshd
cat > "$WORK/sshd_config" <<CONF
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
PrintMotd no
PidFile $WORK/sshd.pid
Subsystem sftp $SFTP_SERVER
CONF
"$SSHD" -D -e -f "$WORK/sshd_config" 2> "$WORK/sshd.log" &
SSHD_PID=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $SSHD_PORT))" 2>/dev/null && break
    sleep 0.05
done

echo "127.0.0.1 $(cut -d' ' -f1,2 "$WORK/host.pub")" > "$WORK/known_hosts"
for p in "$AGENT_PORT" "$SSHD_PORT"; do
    echo "[127.0.0.1]:$p $(cut -d' ' -f1,2 "$WORK/host.pub")" >> "$WORK/known_hosts"
done
OPTS=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$WORK/known_hosts"
      -o IdentitiesOnly=yes -i "$WORK/client" -o LogLevel=ERROR)

# Seconds taken by one sftp batch line against port $1 as user $2.
timed_sftp() {
    local t0 t1
    t0=$(now)
    echo "$3" | sftp "${OPTS[@]}" -P "$1" -b - "$2@127.0.0.1" >/dev/null
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}
min() { echo "if ($1 < $2) $1 else $2" | bc -l; }

# Rounds alternate between the two servers, so background load hits both alike.
a_down=999999; a_up=999999; s_down=999999; s_up=999999
for _ in $(seq "$ROUNDS"); do
    a_down=$(min "$a_down" "$(timed_sftp "$AGENT_PORT" sandbox "get $WORK/data/src.bin /dev/null")")
    s_down=$(min "$s_down" "$(timed_sftp "$SSHD_PORT" root "get $WORK/data/src.bin /dev/null")")
    for server in agent sshd; do
        rm -f "$WORK/data/up.bin"
        if [ "$server" = agent ]; then
            a_up=$(min "$a_up" "$(timed_sftp "$AGENT_PORT" sandbox "put $WORK/data/src.bin $WORK/data/up.bin")")
        else
            s_up=$(min "$s_up" "$(timed_sftp "$SSHD_PORT" root "put $WORK/data/src.bin $WORK/data/up.bin")")
        fi
        cmp -s "$WORK/data/src.bin" "$WORK/data/up.bin" || { echo "$server: upload corrupted" >&2; exit 1; }
    done
done

# Mean of EXEC_N connections running `true` (connect, key exchange, auth, exec, exit).
exec_ms() {
    local t0 t1
    t0=$(now)
    for _ in $(seq "$EXEC_N"); do ssh "${OPTS[@]}" -p "$1" "$2@127.0.0.1" true; done
    t1=$(now)
    echo "($t1 - $t0) * 1000 / $EXEC_N" | bc -l
}
a_exec=$(exec_ms "$AGENT_PORT" sandbox)
s_exec=$(exec_ms "$SSHD_PORT" root)

mibs() { echo "$SIZE_MIB / $1" | bc -l; }
printf "file %d MiB, best of %d rounds; exec = mean of %d x 'ssh host true'\n" "$SIZE_MIB" "$ROUNDS" "$EXEC_N"
printf "%-11s %14s %14s %12s\n" server "download MiB/s" "upload MiB/s" "exec ms"
printf "%-11s %14.1f %14.1f %12.1f\n" pico-agent "$(mibs "$a_down")" "$(mibs "$a_up")" "$a_exec"
printf "%-11s %14.1f %14.1f %12.1f\n" sshd "$(mibs "$s_down")" "$(mibs "$s_up")" "$s_exec"
printf "ratios pico/sshd: download %.2fx  upload %.2fx  exec round trip %.2fx (lower is better)\n" \
    "$(echo "$s_down / $a_down" | bc -l)" "$(echo "$s_up / $a_up" | bc -l)" "$(echo "$a_exec / $s_exec" | bc -l)"

#!/bin/sh
# Load test of `multiround serve` on 127.0.0.1: builds bench_serve.c,
# starts the server on stories260K with an OS-picked port, runs the load
# and burst phases, stops the server with SIGTERM and checks that it
# exits with status 0. Prints the machine's load before and after.
#
# usage: bench/serve/run.sh [BUILD_DIR] [bench_serve options...]
#   BUILD_DIR defaults to build (it must hold the multiround tool).
#   Example: bench/serve/run.sh build --clients 1,4,16 --requests 20
set -eu

build=${1:-build}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/../.." && pwd)
cli="$build/multiround"
if [ ! -x "$cli" ]; then
    echo "run.sh: $cli not found; build the project first (cmake --build $build)" >&2
    exit 2
fi

work=$(mktemp -d /tmp/mr_bench_serve_XXXXXX)
trap 'rm -rf "$work"' EXIT
cc -O2 -std=c11 -D_GNU_SOURCE -o "$work/bench_serve" "$root/bench/serve/bench_serve.c" \
    $(pkg-config --cflags --libs libcurl libcjson) -lpthread

# One kernel thread: stories260K is too small to gain from more, and the
# clients need the other cores. The queue has room for every client.
"$cli" --threads "${MR_BENCH_THREADS:-1}" serve -m "$root/tests/data/lm/stories260K.gguf" \
    --port 0 --queue 64 --max-body 1048576 2> "$work/server.log" &
server=$!

port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log")
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "run.sh: the server did not start; its log:" >&2
    cat "$work/server.log" >&2
    kill "$server" 2>/dev/null || true
    exit 1
fi

echo "machine: $(nproc) cores, $(uptime | sed 's/.*load average/load average/') before"
set +e
"$work/bench_serve" --url "http://127.0.0.1:$port/v1" "$@"
bench_status=$?
set -e
echo "machine: $(uptime | sed 's/.*load average/load average/') after"

kill -TERM "$server"
set +e
wait "$server"
server_status=$?
set -e
echo "server: exit status $server_status after SIGTERM; $(grep -c ' 200,' "$work/server.log") requests answered 200, $(grep -c ' 413,' "$work/server.log") 413, $(grep -c ' 400,' "$work/server.log") 400"
if [ "$bench_status" -ne 0 ] || [ "$server_status" -ne 0 ]; then
    exit 1
fi

#!/bin/sh
# Runs the echo example pair over TCP and a Unix socket: the server serves one connection each.
set -eu
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$bin/eddy_echo_server" 0 --max 1 > "$dir/server.out" &
spid=$!
for _ in $(seq 50); do grep -q listening "$dir/server.out" && break; sleep 0.1; done
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$dir/server.out")
"$bin/eddy_echo_client" 127.0.0.1 "$port" hello eddy
wait $spid
grep -q "served 1 connections" "$dir/server.out"
"$bin/eddy_echo_server" "unix:$dir/echo.sock" --max 1 > "$dir/server2.out" &
spid=$!
for _ in $(seq 50); do grep -q listening "$dir/server2.out" && break; sleep 0.1; done
"$bin/eddy_echo_client" "unix:$dir/echo.sock" over a unix socket
wait $spid
cat "$dir/server.out" "$dir/server2.out"

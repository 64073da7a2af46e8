#!/usr/bin/env bash
# Make a Docker Engine available for the docker tests: install Debian's docker.io if needed, start dockerd, wait.
# Exits 0 even when Docker cannot be had (the docker tests then skip, saying why).
set -u
if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
  echo "installing docker.io"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io) >/tmp/archlab-docker-install.log 2>&1 \
    || { echo "could not install docker.io (see /tmp/archlab-docker-install.log)"; exit 0; }
fi
if docker info >/dev/null 2>&1; then
  echo "docker engine already running"; exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "not root: cannot start dockerd here"; exit 0
fi
echo "starting dockerd"
nohup dockerd >/tmp/archlab-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then echo "docker engine up"; exit 0; fi
  sleep 1
done
echo "dockerd did not come up in 60 s (see /tmp/archlab-dockerd.log)"
exit 0

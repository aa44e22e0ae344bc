#!/usr/bin/env bash
# The system packages `make test` and `make bench-load` need, installed where missing (Debian's apt-get, as root);
# elsewhere one line naming what to install. Used by `make test` and by .ci/run.
# One row per need: a shell test that is true when it is there, then the Debian package that brings it.
set -euo pipefail

NEEDS=(
    "command -v make|make"                                          # the Makefile
    "python3 -c 'import venv, ensurepip'|python3-venv"              # .venv
    "command -v java|openjdk-17-jre-headless"                       # Apache Kafka, the second test broker
    "command -v mvn|maven"                                          # fetches Apache Kafka from Maven Central
    "command -v javac|openjdk-17-jdk-headless"                      # compiles the Java test producer (stack/java_producer.py)
    "command -v docker-compose|docker-compose"                      # `docker-compose config` in the deployment tests
    "command -v chromium|chromium"                                  # the browser test (headless)
    "command -v chromedriver|chromium-driver"                       # and its driver
    "command -v kubectl|kubernetes-client"                          # `kubectl kustomize` in the deployment tests
    "command -v wrk|wrk"                                            # the load generator of bench/load (make bench-load)
    "test -x /usr/sbin/nginx|nginx"                                 # docker-compose's proxy, run in front of the API by the tests
    # The alert rules: promtool checks and unit-tests them, a real Prometheus and blackbox exporter scrape the
    # processes. On a machine run by systemd Debian also starts them as services; the tests start their own.
    "command -v promtool|prometheus"
    "command -v prometheus-blackbox-exporter|prometheus-blackbox-exporter"
)

missing=()
for need in "${NEEDS[@]}"; do
    check="${need%%|*}"
    package="${need##*|}"
    bash -c "$check" >/dev/null 2>&1 || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "missing system packages: install ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]}), then run make test (or make bench-load) again" >&2
    exit 1
fi

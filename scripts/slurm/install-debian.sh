#!/usr/bin/env bash
# scripts/slurm/install-debian.sh: Debian's Slurm and munge for `make test-slurm`, when missing.
#
# Installs slurm-wlm (slurmctld, slurmd, clients) and munge with apt-get, as root only, and starts
# nothing: the test runs its own munged, slurmctld and slurmd in the foreground with a temporary
# configuration. Where it cannot install (not root, no apt-get) it says why and exits 0; the test
# then skips with that reason. A failed apt-get is an error.
set -euo pipefail

needed=(sbatch squeue scontrol slurmctld slurmd munged)
missing=()
for tool in "${needed[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || [[ -x /usr/sbin/$tool ]] || missing+=("$tool")
done
if ((${#missing[@]} == 0)); then
  echo "install-debian.sh: Slurm and munge are installed"
  exit 0
fi
if ((EUID != 0)); then
  echo "install-debian.sh: ${missing[*]} missing and not root: not installing (the test will skip)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-debian.sh: ${missing[*]} missing and no apt-get: not installing (the test will skip)"
  exit 0
fi

# Package scripts must not start munge or Slurm services: the test owns every daemon it runs.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
echo "install-debian.sh: installing slurm-wlm and munge (missing: ${missing[*]})"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
echo "install-debian.sh: installed $(dpkg-query -W -f='slurm-wlm ${Version}, ' slurm-wlm)$(dpkg-query -W -f='munge ${Version}' munge)"

#!/usr/bin/env bash
# Create the peers' virtualenvs for bench/bench_serve.py, apart from the project venv:
#   bench/.venv-peers     MLflow's current release (full `mlflow`, for `mlflow models serve`) + scikit-learn
#                         (+ py-spy, for bench_serve.py --profile)
#   bench/.venv-mlserver  (only with --with-mlserver) MLServer 1.7.1 + mlserver-mlflow, uvloop==0.21.0 pinned
# and install the load generator `wrk` from Debian if it is missing (needs root).
#
# Usage: bash bench/setup_peers.sh [--with-mlserver] [--mlflow-version X.Y.Z] [--reinstall]
# Idempotent: re-running only installs what is missing (--reinstall retries the pinned mlflow when an
# older fallback is installed).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
py="${PYTHON:-python3}"
mlflow_version="3.18.0"
with_mlserver=0
reinstall=0
while [ $# -gt 0 ]; do
  case "$1" in
    --with-mlserver) with_mlserver=1 ;;
    --reinstall) reinstall=1 ;;
    --mlflow-version) mlflow_version="$2"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# The shipped model was pickled with the project's scikit-learn: give the peers the same version so
# both servers run the same predict code.
sklearn_pin=""
if [ -x "$root/.venv/bin/python" ]; then
  sklearn_pin="$("$root/.venv/bin/python" -c 'import sklearn; print(sklearn.__version__)' 2>/dev/null || true)"
fi
sklearn_req="scikit-learn${sklearn_pin:+==$sklearn_pin}"

# --- wrk ------------------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing wrk (Debian)"
    apt-get update -qq && apt-get install -y -qq wrk
  else
    echo "!! wrk not found: run 'sudo apt-get install -y wrk' (bench_serve.py falls back to its Python client)" >&2
  fi
fi

# --- mlflow models serve ----------------------------------------------------------------------------
venv="$here/.venv-peers"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi
have="$("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)' 2>/dev/null || true)"
if [ "$have" != "$mlflow_version" ] && { [ -z "$have" ] || [ "$reinstall" = 1 ]; }; then
  echo "== installing mlflow==$mlflow_version $sklearn_req into $venv"
  if ! "$venv/bin/pip" install -q "mlflow==$mlflow_version" "$sklearn_req"; then
    # e.g. 3.18.0's wheel is on the index but its mlflow-skinny==3.18.0 is not (yet)
    echo "!! mlflow==$mlflow_version did not install; installing the newest mlflow that does" >&2
    "$venv/bin/pip" install -q mlflow "$sklearn_req"
  fi
elif [ "$have" != "$mlflow_version" ]; then
  echo "peers venv keeps mlflow $have (mlflow==$mlflow_version did not install before; --reinstall retries)"
fi
# py-spy for `bench_serve.py --profile` (kept out of the project venv)
if [ ! -x "$venv/bin/py-spy" ]; then
  "$venv/bin/pip" install -q py-spy || echo "!! py-spy did not install; --profile will be unavailable" >&2
fi
"$venv/bin/python" -c "import mlflow, sklearn; print('peers venv: mlflow', mlflow.__version__, 'scikit-learn', sklearn.__version__)"

# --- MLServer (optional third column) --------------------------------------------------------------
if [ "$with_mlserver" = 1 ]; then
  mvenv="$here/.venv-mlserver"
  if [ ! -x "$mvenv/bin/python" ]; then
    echo "== creating $mvenv"
    "$py" -m venv "$mvenv"
    "$mvenv/bin/pip" install -q --upgrade pip
  fi
  if ! "$mvenv/bin/python" -c "import mlserver, mlserver_mlflow" 2>/dev/null; then
    echo "== installing mlserver==1.7.1 mlserver-mlflow==1.7.1 uvloop==0.21.0 $sklearn_req into $mvenv"
    "$mvenv/bin/pip" install -q "mlserver==1.7.1" "mlserver-mlflow==1.7.1" "uvloop==0.21.0" "$sklearn_req" \
      || { echo "!! MLServer did not install cleanly; bench_serve.py will skip it" >&2; exit 0; }
  fi
  "$mvenv/bin/python" -c "import mlserver, mlflow, sklearn; print('mlserver venv: mlserver', mlserver.__version__, 'mlflow', mlflow.__version__, 'scikit-learn', sklearn.__version__)"
fi

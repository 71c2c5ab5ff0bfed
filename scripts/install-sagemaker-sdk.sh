#!/usr/bin/env bash
# Install the SageMaker Python SDK v2 and v3 as *clients* for the tests (integration/test_sagemaker_sdk*.py):
#   bash scripts/install-sagemaker-sdk.sh [--background] [v2] [v3]     (default: both)
# Each SDK gets its own venv, .venv-sagemaker-v2 / .venv-sagemaker-v3, laid *over* the project's .venv
# (a .pth file puts .venv's site-packages after the overlay's own), so boto3, pandas, numpy, pydantic,
# mlflow, scipy, pyarrow... are the ones .venv already has. Only the SDK and the few packages .venv lacks
# are installed, pinned, with --no-deps: no resolver run (a plain `pip install sagemaker` takes
# 340 s / 530 s here, most of it resolving). If the pinned set does not import (say .venv changed), the
# overlay falls back to a normal resolving install. The SDK is a test dependency only, never mldeploy's.
#
# Each venv gets .venv-sagemaker-vN/.mldeploy-ready when its SDK imports, .mldeploy-failed otherwise
# (the log is .venv-sagemaker-vN.log); --background returns at once, leaving .mldeploy-installing
# (the installer's pid) while it runs, and the tests wait for one of the markers while that process
# lives. Idempotent: a ready venv is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

background=0
versions=()
for arg in "$@"; do
    case "$arg" in
        --background) background=1 ;;
        v2|v3) versions+=("$arg") ;;
        *) echo "usage: $0 [--background] [v2] [v3]" >&2; exit 2 ;;
    esac
done
[ ${#versions[@]} -gt 0 ] || versions=(v2 v3)

if [ ! -x .venv/bin/python ]; then
    echo "install-sagemaker-sdk.sh: no .venv yet (run scripts/test.sh or create it first)" >&2
    exit 1
fi

# What `pip install sagemaker==...` adds on top of .venv ([dev,mlserver]), frozen.
V2_PINS=(
    sagemaker==2.257.7 sagemaker-core==1.0.78
    attrs==25.4.0 dill==0.4.1 google-pasta==0.2.0 importlib-metadata==6.11.0 markdown-it-py==4.3.0
    mdurl==0.1.2 mock==4.0.3 multiprocess==0.70.19 omegaconf==2.4.0 packaging==24.2 pathos==0.3.5
    pox==0.3.7 ppft==1.7.8 psutil==7.2.2 pytz==2026.6 rich==14.3.4 schema==0.7.8
    smdebug-rulesconfig==1.0.1 tblib==3.2.2 tqdm==4.70.1
)
V2_SMOKE='import sagemaker.model, sagemaker.predictor, sagemaker.serializers, sagemaker.deserializers'
V3_PINS=(
    sagemaker==3.27.0 sagemaker-core==2.27.0 sagemaker-serve==1.27.0 sagemaker-train==1.27.0
    sagemaker-mlops==1.27.0 sagemaker-mlflow==0.5.0 sagemaker-schema-inference-artifacts==0.0.5
    bcrypt==5.0.0 cachebox==5.2.3 deepdiff==9.1.0 fsspec==2026.9.0 importlib-metadata==6.11.0
    invoke==3.0.3 json5==0.17.3 markdown-it-py==4.3.0 mdurl==0.1.2 mmh3==5.3.1 mock==4.0.3
    nest-asyncio==1.6.0 omegaconf==2.4.0 orderly-set==5.5.0 paramiko==5.1.0 psutil==7.2.2
    pyiceberg==0.12.0 PyNaCl==1.6.2 pyroaring==1.2.0 pytz==2026.6 rich==14.3.4 s3fs==0.4.2
    schema==0.7.8 smdebug-rulesconfig==1.0.1 strictyaml==1.7.3 tblib==3.2.2 tenacity==9.2.1
    tqdm==4.70.1 zstandard==0.25.0
)
V3_SMOKE='import sagemaker.core.resources, sagemaker.serve'

install_one() {
    local v=$1 dir=.venv-sagemaker-$1 log=$PWD/.venv-sagemaker-$1.log spec smoke
    local -a pins
    if [ "$v" = v2 ]; then pins=("${V2_PINS[@]}"); smoke=$V2_SMOKE; spec=${pins[0]}
    else pins=("${V3_PINS[@]}"); smoke=$V3_SMOKE; spec=${pins[0]}; fi
    if [ -f "$dir/.mldeploy-ready" ] && [ "$(cat "$dir/.mldeploy-ready")" = "$spec" ]; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    echo $$ > "$dir/.mldeploy-installing"  # the tests wait while this process lives
    local start=$SECONDS
    {
        .venv/bin/python -m venv "$dir"  # the base interpreter of .venv, not .venv itself
        site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        .venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
            > "$site/zz-mldeploy-base.pth"
        export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} SAGEMAKER_SUPPRESS_V2_WARNING=1
        "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${pins[@]}"
        if ! "$dir/bin/python" -c "$smoke"; then
            echo "pinned set does not import: resolving $spec over .venv"
            "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"
            "$dir/bin/python" -c "$smoke"
        fi
    } >"$log" 2>&1 && {
        echo "$spec" > "$dir/.mldeploy-ready"
        echo "install-sagemaker-sdk.sh: $spec in $dir ($((SECONDS - start)) s)" | tee -a "$log" >&2
    } || {
        mkdir -p "$dir"; touch "$dir/.mldeploy-failed"
        echo "install-sagemaker-sdk.sh: $spec failed, see $log; its tests will skip" >&2
    }
    rm -f "$dir/.mldeploy-installing"
}

if [ "$background" = 1 ]; then
    for v in "${versions[@]}"; do
        dir=.venv-sagemaker-$v
        if [ ! -f "$dir/.mldeploy-ready" ]; then mkdir -p "$dir" && : > "$dir/.mldeploy-installing"; fi
    done
    # one after the other (two cores): v2 is needed first by the tests, which wait for the markers
    setsid nohup bash "$0" "${versions[@]}" >/dev/null 2>&1 < /dev/null &  # its own session
    exit 0
fi
for v in "${versions[@]}"; do  # claim every venv still to do at once, then do them in turn
    if [ -f ".venv-sagemaker-$v/.mldeploy-installing" ]; then echo $$ > ".venv-sagemaker-$v/.mldeploy-installing"; fi
done
for v in "${versions[@]}"; do
    install_one "$v"
done

#!/usr/bin/env bash
# Build a training image and push it to Amazon ECR.
#
#   ./build-and-push.sh <image-name> [yolo|tfod|yolo-serve] [tag]
#
# Resolves the account (aws sts get-caller-identity) and region (aws configure) unless
# AWS_ACCOUNT_ID / AWS_REGION are set, creates the ECR repository if missing, logs in, builds
# Dockerfile.<kind>, tags it git-<revision> (the commit it was built from; -dirty with local changes)
# and, when given, <tag> too, pushes them, and writes the full URI to ecr_image_fullname.txt (what the
# SDK's launch_job reads). No moving tag such as `latest` unless you ask for it.
# yolo-serve: Dockerfile.yolo's serving variant (--target serve: ONNX Runtime, no torch, docs/serving.md), pushed
# to the same repository with every tag suffixed -serve (git-<revision>-serve, <tag>-serve), where
# deploy(weights="onnx") finds it next to the training image; its URI goes to ecr_serve_image_fullname.txt.
#
# Environment overrides:
#   ENGINE=docker|podman      container engine (default: docker if its engine answers, else podman)
#   AWS_ACCOUNT_ID, AWS_REGION
#   REGISTRY=host[:port]      push somewhere other than <account>.dkr.ecr.<region>.amazonaws.com
#   PUSH_TLS_VERIFY=false     podman: plain-HTTP registry (tests only)
#   BUILD_ARGS="K=V K2=V2"    extra --build-arg pairs, e.g. BASE_IMAGE=...
#   BUILD_FLAGS="..."         extra flags for the build command
#   OUTPUT_FILE=path          where to write the URI (default: ecr_image_fullname.txt)
set -euo pipefail

die() { echo "build-and-push: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then usage 0; fi
if [ $# -lt 1 ] || [ $# -gt 3 ]; then usage 2; fi
name=$1
kind=${2:-yolo}
tag=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
dockerfile="$here/Dockerfile.$kind"

target=()
suffix=""
default_output=ecr_image_fullname.txt
case "$kind" in
    yolo|tfod) ;;
    yolo-serve)
        dockerfile="$here/Dockerfile.yolo"; target=(--target serve); suffix="-serve"
        default_output=ecr_serve_image_fullname.txt ;;
    *)  # name, kind and tag in the wrong order: say the order and the command meant
        case "$name" in yolo|tfod|yolo-serve)
            die "unknown image kind '$kind': the arguments are NAME KIND [TAG] and '$name' is a kind: ./build-and-push.sh $kind $name${tag:+ $tag}" ;; esac
        case "$tag" in yolo|tfod|yolo-serve)
            die "unknown image kind '$kind': the arguments are NAME KIND [TAG] and '$tag' is a kind: ./build-and-push.sh $name $tag $kind" ;; esac
        die "unknown image kind '$kind': use yolo, tfod or yolo-serve" ;;
esac
[ -f "$dockerfile" ] || die "$dockerfile not found"
[[ "$name" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || die "'$name' is not a valid ECR repository name (lowercase letters, digits, . _ - /)"
[ -z "$tag" ] || [[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not a valid image tag"
[ -z "$tag" ] || [ $(( ${#tag} + ${#suffix} )) -le 128 ] || die "'$tag$suffix' is longer than an image tag may be (128 characters)"

command -v aws >/dev/null 2>&1 || die "the AWS CLI (aws) is not installed: https://docs.aws.amazon.com/cli/ (or pip install awscli)"

if [ -z "${ENGINE:-}" ]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    elif command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    else
        die "no container engine: install Docker (and start it) or podman, or set ENGINE"
    fi
fi
command -v "$ENGINE" >/dev/null 2>&1 || die "ENGINE=$ENGINE is not installed"
"$ENGINE" info >/dev/null 2>&1 || die "$ENGINE is installed but its engine does not answer (is the daemon running?)"

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}
[ -n "$region" ] || die "no AWS region: run 'aws configure' or set AWS_REGION"
if [ -z "${AWS_ACCOUNT_ID:-}" ]; then
    AWS_ACCOUNT_ID=$(aws sts get-caller-identity --query Account --output text --region "$region" 2>/dev/null) \
        || die "no usable AWS credentials: run 'aws configure' (or aws sso login), or set AWS_PROFILE"
fi
registry=${REGISTRY:-$AWS_ACCOUNT_ID.dkr.ecr.$region.amazonaws.com}
uri="$registry/$name"

tls=()
if [ "$ENGINE" = podman ] && [ "${PUSH_TLS_VERIFY:-true}" = false ]; then
    tls=(--tls-verify=false)
fi

echo "==> ECR repository $name in $region (account $AWS_ACCOUNT_ID)"
if ! aws ecr describe-repositories --region "$region" --repository-names "$name" >/dev/null 2>&1; then
    aws ecr create-repository --region "$region" --repository-name "$name" \
        --image-scanning-configuration scanOnPush=true >/dev/null \
        || die "could not create ECR repository $name (permissions? ecr:CreateRepository)"
    echo "    created"
fi

echo "==> logging in to $registry"
aws ecr get-login-password --region "$region" \
    | "$ENGINE" login "${tls[@]}" --username AWS --password-stdin "$registry" >/dev/null \
    || die "docker login to $registry failed"

revision=$(git -C "$here" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$here" status --porcelain 2>/dev/null)" ]; then
    revision="$revision-dirty"
fi

build_args=()
for pair in ${BUILD_ARGS:-}; do
    build_args+=(--build-arg "$pair")
done
read -r -a extra_flags <<< "${BUILD_FLAGS:-}"

tags=("git-$revision$suffix")
if [ -n "$tag" ] && [ "$tag" != "git-$revision" ]; then
    tags=("$tag$suffix" "git-$revision$suffix")
fi
tag_flags=()
for t in "${tags[@]}"; do
    tag_flags+=(-t "$uri:$t")
done

echo "==> building $dockerfile as ${tags[*]/#/$uri:}"
"$ENGINE" build "${extra_flags[@]}" "${build_args[@]}" "${target[@]}" -f "$dockerfile" "${tag_flags[@]}" "$here"

echo "==> pushing"
for t in "${tags[@]}"; do
    "$ENGINE" push "${tls[@]}" "$uri:$t"
done

echo "$uri:${tags[0]}" > "${OUTPUT_FILE:-$default_output}"
echo "==> pushed ${tags[*]/#/$uri:}; URI $uri:${tags[0]} written to ${OUTPUT_FILE:-$default_output}"

"""The YOLO image's serving variant: ``Dockerfile.yolo`` built with ``--target serve``.

ONNX Runtime, OpenCV and NumPy behind the same server, no torch, no CUDA, no ultralytics (under 1.5 GB against
the full image's 5.6; a worker ready in about a second, docs/serving.md). It serves a model folder's ONNX export
(``exports/best.onnx``, from training with ``export=onnx``) and refuses, naming the full image, what needs torch:
training, conversion, ``best.pt``. The variant says what it is through ``SM_DETECTORS_VARIANT=serve`` (set in its
stage of the Dockerfile); ``build-and-push.sh NAME yolo-serve`` pushes it next to the full image's tag with
:data:`TAG_SUFFIX`, where ``sdk.serving.deploy(weights="onnx")`` looks for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from container.failure import UserError

VARIANT_ENV = "SM_DETECTORS_VARIANT"
SERVE_ONLY = "serve"  # the value of VARIANT_ENV in the serving variant
TAG_SUFFIX = "-serve"  # IMAGE:TAG's serving variant is IMAGE:TAG-serve (build-and-push.sh, sdk.serving.deploy)
MAX_TAG = 128  # characters in an image tag (OCI distribution spec)
FULL_IMAGE = "the full YOLO image (Dockerfile.yolo's default target, build-and-push.sh NAME yolo)"


def serve_only(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this is the serving variant (no torch)."""
    return environ.get(VARIANT_ENV, "").strip() == SERVE_ONLY


def serves_onnx(weights: str | None) -> bool:
    """Whether ``SERVING_WEIGHTS=weights`` serves the ONNX export: the format name in any case (the YOLO adapter
    lower-cases it) or a path to a ``.onnx`` file (``exports/best.onnx``)."""
    choice = (weights or "").strip()
    return choice.lower() == "onnx" or choice.endswith(".onnx")


def refuse(what: str) -> UserError:
    """The error for a command or a file the serving variant cannot run."""
    return UserError(f"{what} needs torch, which this serving variant of the YOLO image leaves out (it serves ONNX "
                     f"exports only): use {FULL_IMAGE}")


def serving_tag(image: str) -> str | None:
    """``REPO:TAG`` -> ``REPO:TAG-serve``; None for an image named by digest, without a tag, already the variant or
    with a tag too long to take the suffix (no variant to find)."""
    if "@" in image:
        return None
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag or not tag or tag.endswith(TAG_SUFFIX) or len(tag) + len(TAG_SUFFIX) > MAX_TAG:
        return None  # past MAX_TAG, TAG-serve is no tag: build-and-push.sh refuses to push it
    return f"{repo}:{tag}{TAG_SUFFIX}"

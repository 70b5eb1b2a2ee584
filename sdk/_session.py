"""The AWS session of every command: one region rule and one credentials check, for launch and undeploy alike.

Region: the session's own, else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the profile's (``aws configure``),
the order ``build-and-push.sh`` uses. boto3 itself reads ``AWS_DEFAULT_REGION`` and the profile but (in the
pinned version) not ``AWS_REGION``, so a bare ``boto3.Session()`` disagreed with the launch about the region.
No boto3 import at module level: the request checks run without it.
"""

from __future__ import annotations

import os
from typing import Any

from sdk._errors import REGION_HINT, ConfigurationError

REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")


def resolve_region(session: Any = None) -> tuple[str, str]:
    """``(region, where it came from)``; ConfigurationError naming the fix when there is none."""
    if session is not None and getattr(session, "region_name", None):
        return session.region_name, "the session passed in"
    for var in REGION_VARIABLES:
        if os.environ.get(var):
            return os.environ[var], var
    import boto3

    profile_session = boto3.Session()
    if profile_session.region_name:
        return profile_session.region_name, f"profile {profile_session.profile_name!r}"
    raise ConfigurationError(f"no AWS region: {REGION_HINT}")


def aws_session(session: Any = None) -> Any:
    """``session``, or one from the environment, with its region resolved by :func:`resolve_region`."""
    import boto3

    region, _ = resolve_region(session)
    if session is not None and getattr(session, "region_name", None):
        return session
    return boto3.Session(region_name=region, profile_name=getattr(session, "profile_name", None)) \
        if session is not None else boto3.Session(region_name=region)


def has_credentials(session: Any = None) -> bool:
    """True when boto3 finds credentials (nothing is sent to AWS to check them)."""
    import boto3

    try:
        return (session or boto3.Session()).get_credentials() is not None
    except Exception:  # a broken profile file: botocore's own errors, whatever their class
        return False

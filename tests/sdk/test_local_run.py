"""Local mode without training: odd paths, private records, the environment kept off command lines."""

from __future__ import annotations

import json
import os
import stat

import pytest

import sdk
from sdk.cli import main as cli
from sdk.jobs.local import LocalRun, jobs_home, path_of_uri
from tests.sdk.conftest import IMAGE, ROLE

SECRET = "s3cr3t-value-1234"


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("name", ["with space", "100%", "a#b", "données-é漢"])
def test_file_uris_of_odd_paths_are_decoded(tmp_path, monkeypatch, name):
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / name / "home"))
    data = tmp_path / name / "data"
    (data / "images").mkdir(parents=True)
    (data / "images" / f"{name}.jpg").write_bytes(b"jpg")
    plan = sdk.plan_job(instance_type="local", image="yolo", train=data, job_name="odd")
    uri = plan.request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    assert path_of_uri(uri) == data.resolve()
    run = LocalRun(plan.request, jobs_home() / "odd", kind="yolo")
    run.prepare()
    assert (run.base / "input" / "data" / "train" / "images" / f"{name}.jpg").read_bytes() == b"jpg"


def test_a_refused_channel_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "etc").symlink_to("/etc", target_is_directory=True)
    plan = sdk.plan_job(instance_type="local", image="yolo", train=data, job_name="linked")
    with pytest.raises(sdk.ConfigurationError, match="etc .a link to /etc, outside the folder"):
        LocalRun(plan.request, jobs_home() / "linked", kind="yolo").prepare()


def test_an_image_run_gets_the_environment_by_name_and_its_records_are_private(tmp_path, monkeypatch):
    """A stand-in engine on PATH records what ``docker run`` would be given (no container engine needed)."""
    bin_dir, seen = tmp_path / "bin", tmp_path / "seen"
    bin_dir.mkdir()
    seen.mkdir()
    engine = bin_dir / "podman"
    engine.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$SEEN/argv"\nprintf "%s" "$HF_TOKEN" > "$SEEN/env"\n')
    engine.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SEEN", str(seen))
    home = tmp_path / "home"
    monkeypatch.setenv("SM_DETECTORS_HOME", str(home))
    (home / "jobs").mkdir(parents=True, mode=0o755)  # as an older version left it
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    job = sdk.launch_job(instance_type="local", image=IMAGE, engine="podman", train=data, job_name="envjob",
                         environment={"HF_TOKEN": SECRET}, logs=False)
    assert job.status == "Completed"
    argv = (seen / "argv").read_text().splitlines()
    assert argv[:2] == ["run", "--rm"] and argv[argv.index("--env"):argv.index("--env") + 2] == ["--env", "HF_TOKEN"]
    assert SECRET not in "\n".join(argv)
    assert (seen / "env").read_text() == SECRET  # the value reached the engine through its environment
    job_dir = home / "jobs" / "envjob"
    assert _mode(home / "jobs") == 0o700 and _mode(job_dir) == 0o700
    assert _mode(job_dir / "job.json") == 0o600 and _mode(job_dir / "log.txt") == 0o600
    assert json.loads((job_dir / "job.json").read_text())["TrainingJobStatus"] == "Completed"


def test_dry_run_masks_environment_values_and_secrets(aws, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    url = "https://oauth2:glpat-abcdef@gitlab.example.com/team/repo.git"
    assert cli(["launch", "--image", IMAGE, "--role", ROLE, "--output-path", "s3://detectors-data/jobs",
                "--train", str(data), "--env", f"HF_TOKEN={SECRET}", "--env", "PLAIN=visible-value",
                "--tag", f"source={url}", "--tag", "api_key=AKIAABCDEFGHIJKLMNOP", "--dry-run"]) == 0
    out = capsys.readouterr().out
    request = json.loads(out)["CreateTrainingJob"]
    assert request["Environment"] == {"HF_TOKEN": "***", "PLAIN": "***"}  # names kept, values masked
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["source"] == "https://***@gitlab.example.com/team/repo.git" and tags["api_key"] == "***"
    for secret in (SECRET, "visible-value", "glpat-abcdef", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in out


@pytest.mark.parametrize("name", ["..", "../../victim", "a/b"])
def test_a_request_with_a_channel_name_that_is_no_folder_writes_nothing(tmp_path, monkeypatch, name):
    """The API's own pattern lets '..' through; local mode refuses it before a byte is downloaded or linked."""
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("x")
    request = sdk.plan_job(instance_type="local", image="yolo", train=data, job_name="dots").request
    request["InputDataConfig"][0]["ChannelName"] = name
    run = LocalRun(request, jobs_home() / "dots", kind="yolo")
    with pytest.raises(sdk.ConfigurationError, match="is not valid"):
        run.prepare()
    assert sorted(p.name for p in (jobs_home() / "dots").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "home"]

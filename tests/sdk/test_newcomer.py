"""A newcomer's first hour, the README followed literally: a dry run without AWS, one region rule, help that
says what a flag does, logs without colour codes in a file, ``describe`` naming every format the train
channel takes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from container.annotations.detect import FORMATS
from sdk.cli import main as cli
from sdk.cli import parser
from tests.conftest import ROOT
from tests.sdk.conftest import IMAGE, ROLE


@pytest.fixture
def no_aws(tmp_path, monkeypatch):
    """A machine with nothing of AWS: no credentials, profile, region, role or image file (and no metadata service)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "SM_DETECTORS_ROLE", "SAGEMAKER_ROLE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # nothing leaves this machine
    monkeypatch.setenv("SM_DETECTORS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "images" / "a.jpg").write_bytes(b"jpg")
    (data / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (data / "data.yaml").write_text("names: [thing]\n")
    return data


def test_a_dry_run_without_aws_is_one_command_naming_every_missing_piece(no_aws, monkeypatch, capsys):
    assert cli(["launch", "--image", "ecr_image_fullname.txt", "--train", str(no_aws), "--dry-run"]) == 0
    captured = capsys.readouterr()
    plan = json.loads(captured.out)
    assert set(plan["missing"]) == {"image", "role", "region", "credentials", "output_path"}
    assert plan["CreateTrainingJob"]["TrainingJobName"] and "stand-in" in plan["region"]
    for words in ("build-and-push.sh", "--role", "AWS_REGION", "aws configure", "--output-path"):
        assert words in captured.err
    shell = plan["missing"]["credentials"].partition("in Python")[0]
    assert "aws configure" in shell and "AWS_ACCESS_KEY_ID" in shell and "session=" not in shell
    # with what a plan can be given, only the credentials are left (needed to launch, not to plan)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert cli(["launch", "--image", IMAGE, "--role", ROLE, "--output-path", "s3://my-bucket/jobs",
                "--train", str(no_aws), "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["missing"]) == {"credentials"} and plan["region"] == "region eu-west-1 (from AWS_REGION)"


def test_a_tuning_dry_run_names_the_missing_pieces_too(no_aws, capsys):
    assert cli(["tune", "--train", str(no_aws), "--range", "lr0=0.0001:0.1:log", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["missing"]) == {"image", "role", "region", "credentials", "output_path"}
    assert plan["CreateHyperParameterTuningJob"]["HyperParameterTuningJobConfig"]


def test_a_mistake_and_the_missing_pieces_are_named_together(no_aws, capsys):
    assert cli(["launch", "--train", str(no_aws), "--hp", "no_such_hp=1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no_such_hp" in err and "missing as well" in err and "AWS_REGION" in err and "--role" in err


def test_every_command_takes_the_region_from_aws_region(aws, monkeypatch, capsys):
    """undeploy used boto3's own rule (AWS_DEFAULT_REGION, the profile), launch AWS_REGION too."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert cli(["undeploy", "no-such-endpoint"]) == 1
    err = capsys.readouterr().err
    assert "no-such-endpoint" in err and "region" not in err


def test_no_module_makes_an_aws_session_of_its_own():
    """One region rule: every boto3 session of the SDK is made by sdk._session."""
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "sdk").glob("*.py"))
                 if path.name != "_session.py"
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"boto3\.(Session|client|resource)\(", line) and "session=boto3.Session(" not in line]
    assert offenders == []


def test_launch_help_says_what_each_no_flag_does():
    launch = parser()._subparsers._group_actions[0].choices["launch"]
    helps = {a.option_strings[0]: a.help for a in launch._actions if a.option_strings}
    assert helps["--no-checkpoints"].startswith("do not sync checkpoints")
    assert helps["--no-wait"].startswith("return once the job is created")
    assert helps["--no-progress"].startswith("while waiting, no")
    from sdk.jobs.spec import FOLLOW_ARGS, JOB_ARGS

    assert all(a.flag_help for a in (*JOB_ARGS, *FOLLOW_ARGS) if a.cli == "negflag")
    unhelped = [f"{name} {option}" for name, command in parser()._subparsers._group_actions[0].choices.items()
                for action in command._actions for option in action.option_strings
                if option.startswith("--no-") and not action.help]
    assert unhelped == []


def test_logs_into_a_file_carry_no_colour_codes(aws, tmp_path, capsys):
    job_dir = tmp_path / "home" / "jobs" / "coloured"
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text(json.dumps({"TrainingJobName": "coloured", "TrainingJobStatus": "Completed"}))
    (job_dir / "log.txt").write_text("\x1b[34m\x1b[1mtrain: \x1b[0mScanning images\n[metrics] epoch=1\n")
    assert cli(["logs", "coloured", "--local"]) == 0  # stdout here is no terminal, as in `... > run.log`
    out = capsys.readouterr().out
    assert out == "train: Scanning images\n[metrics] epoch=1\n"


@pytest.mark.parametrize("image", ["yolo", "tfod"])
def test_describe_lists_every_format_the_train_channel_takes(image, capsys):
    assert cli(["describe", "--image", image]) == 0
    train = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("train "))
    assert all(fmt in train for fmt in FORMATS)
    assert Path(ROOT / "container" / image / "schema.yaml").read_text().count("labelme") == 0  # declared once


def test_check_warns_of_class_names_that_differ_only_by_case(tmp_path, capsys):
    from PIL import Image

    from sdk.cli import data_main as data_cli

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n2 0.6 0.6 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text("names: [Cat, dog, cat]\n")
    assert data_cli(["check", str(tmp_path)]) == 0
    assert "differ only by case" in capsys.readouterr().out
    assert data_cli(["check", str(tmp_path), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["report"]["warnings"]
    assert [w["examples"] for k, w in warnings.items() if "only by case" in k] == [["'Cat' / 'cat'"]]

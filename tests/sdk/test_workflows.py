"""The seeds' workflows against the moto server over HTTP: retrain on upload (pipeline + EventBridge)
and hyperparameter tuning (played by the double's tuner, whose jobs really train)."""

from __future__ import annotations

import json

import pytest

import sdk
from sdk.cli import main as cli
from sdk.leaderboard import leaderboard
from sdk.pipeline import event_pattern, pipeline_definition, retrain_on_upload
from sdk.tuning import parameter_ranges, plan_tuning, tune_job
from tests.conftest import FAST
from tests.sdk.conftest import BUCKET, IMAGE, ROLE
from tests.sdk.double import check_against_service_model, route_pipeline_targets

OUT = f"s3://{BUCKET}/jobs"
DATA = f"s3://{BUCKET}/incoming/pcb/"


# -- retrain on upload ------------------------------------------------------------------------------
def _resolve(value, parameters, execution_id="exec-1"):
    """A pipeline definition's references resolved as SageMaker would at execution time."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            ref = value["Get"]
            return execution_id if ref == "Execution.PipelineExecutionId" else parameters[ref.split(".", 1)[1]]
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(str(_resolve(v, parameters, execution_id)) for v in join["Values"])
        return {k: _resolve(v, parameters, execution_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, parameters, execution_id) for v in value]
    return value


def test_retrain_on_upload_creates_pipeline_rule_target_and_role(aws, monkeypatch):
    route_pipeline_targets(monkeypatch)
    trigger = retrain_on_upload(name="pcb-retrain", data=DATA, image=IMAGE, role=ROLE, output_path=OUT,
                                hyperparameters={"epochs": 30, "imgsz": 640}, instance_type="ml.g5.2xlarge",
                                marker="_READY", session=aws)
    sm, events, iam, s3 = (aws.client(s) for s in ("sagemaker", "events", "iam", "s3"))

    # the pipeline, as stored: its parameters and a Training step that resolves to a valid CreateTrainingJob
    described = sm.describe_pipeline(PipelineName="pcb-retrain")
    assert described["RoleArn"] == ROLE
    definition = json.loads(described["PipelineDefinition"])
    params = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert params == {"DataPrefix": DATA, "InstanceType": "ml.g5.2xlarge", "hp_epochs": "30", "hp_imgsz": "640"}
    (step,) = definition["Steps"]
    assert step["Type"] == "Training"
    resolved = _resolve(step["Arguments"], {**params, "hp_epochs": "5"})
    check_against_service_model("CreateTrainingJob", {"TrainingJobName": "pipelines-exec1-train", **resolved})
    assert resolved["HyperParameters"]["epochs"] == "5"
    assert resolved["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == DATA
    assert resolved["CheckpointConfig"]["S3Uri"] == f"{OUT}/pipelines/pcb-retrain/exec-1/checkpoints"
    assert resolved["AlgorithmSpecification"]["MetricDefinitions"] == sdk.metric_definitions("yolo")

    # S3 tells EventBridge; the rule matches the marker upload only and starts the pipeline with its target's
    # parameters (moto routes S3's events to rules; the double plays the SageMaker Pipelines target)
    rule = events.describe_rule(Name=trigger.rule_name)
    assert rule["State"] == "ENABLED" and json.loads(rule["EventPattern"]) == trigger.event_pattern
    for key in ("incoming/pcb/img001.jpg", "other/_READY", "incoming/pcb/_READY"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    (started,) = sm.list_pipeline_executions(PipelineName="pcb-retrain")["PipelineExecutionSummaries"]
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=started["PipelineExecutionArn"])
    assert execution["PipelineExecutionDescription"] == f"started by rule {trigger.rule_name}"
    given = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=started["PipelineExecutionArn"])
    assert given["PipelineParameters"] == [{"Name": "DataPrefix", "Value": DATA}]
    (target,) = events.list_targets_by_rule(Rule=trigger.rule_name)["Targets"]
    assert target["Arn"] == described["PipelineArn"] == trigger.pipeline_arn
    assert target["SageMakerPipelineParameters"]["PipelineParameterList"] == [{"Name": "DataPrefix", "Value": DATA}]

    # the role EventBridge assumes may start exactly this pipeline
    role_name = target["RoleArn"].rsplit("/", 1)[1]
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    policy = iam.get_role_policy(RoleName=role_name, PolicyName="start-pipeline")["PolicyDocument"]
    assert policy["Statement"] == [{"Effect": "Allow", "Action": "sagemaker:StartPipelineExecution",
                                    "Resource": trigger.pipeline_arn}]

    # start it (as the rule would), with a parameter overridden
    arn = trigger.start(hp_epochs=3)
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert execution["PipelineArn"] == trigger.pipeline_arn
    assert len(sm.list_pipeline_executions(PipelineName="pcb-retrain")["PipelineExecutionSummaries"]) == 2
    with pytest.raises(sdk.ConfigurationError, match="no parameter hp_epoch; it has"):
        trigger.start(hp_epoch=3)

    # calling again updates in place: one pipeline, one rule, one target
    retrain_on_upload(name="pcb-retrain", data=DATA, image=IMAGE, role=ROLE, output_path=OUT,
                      hyperparameters={"epochs": 40}, session=aws)
    definition = json.loads(sm.describe_pipeline(PipelineName="pcb-retrain")["PipelineDefinition"])
    assert {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}["hp_epochs"] == "40"
    assert len(events.list_targets_by_rule(Rule=trigger.rule_name)["Targets"]) == 1
    assert [r["Name"] for r in events.list_rules()["Rules"]] == [trigger.rule_name]


def test_event_pattern_without_marker_matches_the_prefix():
    assert event_pattern("b", "data/") == {"source": ["aws.s3"], "detail-type": ["Object Created"],
                                           "detail": {"bucket": {"name": ["b"]},
                                                      "object": {"key": [{"prefix": "data/"}]}}}


@pytest.mark.parametrize("kwargs, words", [
    ({"data": "/local/folder"}, "must be the S3 prefix"),
    ({"hyperparameters": {"epoch": 3}}, "did you mean 'epochs'"),
    ({"name": "bad_name"}, "pipeline name 'bad_name' is not valid"),
    ({"marker": "sub/_READY"}, "marker is a file name"),
])
def test_retrain_on_upload_refuses_bad_input_before_creating_anything(aws, kwargs, words):
    args = {"name": "pcb", "data": DATA, "image": IMAGE, "role": ROLE, "output_path": OUT, "session": aws, **kwargs}
    with pytest.raises(sdk.ConfigurationError, match=words):
        retrain_on_upload(**args)
    assert aws.client("sagemaker").list_pipelines()["PipelineSummaries"] == []
    assert aws.client("events").list_rules()["Rules"] == []


def test_pipeline_definition_without_hyperparameters():
    request = sdk.plan_job(image=IMAGE, role=ROLE, output_path=OUT, train=DATA, job_name="x").request
    definition = pipeline_definition(request)
    assert [p["Name"] for p in definition["Parameters"]] == ["DataPrefix", "InstanceType"]
    assert "CheckpointConfig" not in definition["Steps"][0]["Arguments"]


# -- tuning ---------------------------------------------------------------------------------------------
def test_parameter_ranges_typed_by_the_schema():
    schema = sdk.image_schema("tfod")
    ranges = parameter_ranges(schema, {"learning_rate": (1e-4, 0.1, "log"), "batch_size": (4, 16),
                                       "experiment": ["retinanet_mobile_coco", "retinanet_resnetfpn_coco"],
                                       "quantize": [True, False]})
    assert ranges["ContinuousParameterRanges"] == [
        {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}]
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "batch_size", "MinValue": "4", "MaxValue": "16", "ScalingType": "Auto"}]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "experiment", "Values": ["retinanet_mobile_coco", "retinanet_resnetfpn_coco"]},
        {"Name": "quantize", "Values": ["true", "false"]}]


@pytest.mark.parametrize("ranges, words", [
    ({"learning_rte": (0.001, 0.1)}, "did you mean 'learning_rate'"),
    ({"batch_size": (4.5, 16)}, "batch_size is an integer"),
    ({"learning_rate": (0.1, 0.001)}, r"low \(0.1\) must be below high"),
    ({"learning_rate": (0, 0.1, "log")}, "Logarithmic scaling needs low > 0"),
    ({"experiment": ["retinanet_mobile_coco", "faster_rcnn"]}, "faster_rcnn"),
    ({"learning_rate": (0.001, 0.1, "cubic")}, "scaling 'cubic' is not one of"),
    ({}, "ranges is empty"),
])
def test_bad_ranges_are_named(ranges, words):
    with pytest.raises(sdk.ConfigurationError, match=words):
        parameter_ranges(sdk.image_schema("tfod"), ranges)


def test_tuning_request_objective_and_early_stopping():
    plan = plan_tuning(image=IMAGE, role=ROLE, output_path=OUT, train=DATA, hyperparameters={"epochs": 20},
                       ranges={"lr0": (1e-4, 1e-1, "log")}, max_jobs=6, max_parallel=2, tuning_job_name="t1")
    request = plan.request
    check_against_service_model("CreateHyperParameterTuningJob", request)
    config = request["HyperParameterTuningJobConfig"]
    # printed every epoch (early stopping sees it), the best epoch's (the best.pt the job ships)
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val:best_mAP50-95"}
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert request["TrainingJobDefinition"]["StaticHyperParameters"] == {"epochs": "20"}
    assert request["TrainingJobDefinition"]["CheckpointConfig"] == {"S3Uri": f"{OUT}/t1/checkpoints/",
                                                                    "LocalPath": "/opt/ml/checkpoints"}
    names = [d["Name"] for d in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]]
    assert "val:best_mAP50-95" in names
    with pytest.raises(sdk.ConfigurationError, match="objective 'mAP' is not a metric of the yolo image"):
        plan_tuning(image=IMAGE, role=ROLE, output_path=OUT, train=DATA, ranges={"lr0": (1e-4, 1e-1)}, objective="mAP")
    with pytest.raises(sdk.ConfigurationError, match="lr0 given both as a fixed hyperparameter and as a range"):
        plan_tuning(image=IMAGE, role=ROLE, output_path=OUT, train=DATA, hyperparameters={"lr0": 0.01},
                    ranges={"lr0": (1e-4, 1e-1)})
    with pytest.raises(sdk.ConfigurationError, match="tuning job name .* 1 to 32"):
        plan_tuning(image=IMAGE, role=ROLE, output_path=OUT, train=DATA, ranges={"lr0": (1e-4, 1e-1)},
                    tuning_job_name="x" * 33)


@pytest.mark.slow
def test_tune_wait_best_fetch(sagemaker, shapes, tmp_path, capsys):
    """Two real trainings (the tuner's grid over lr0's bounds); the best by val:best_mAP50-95 is fetched."""
    tuning = tune_job(image=IMAGE, role=ROLE, output_path=OUT, train=shapes, hyperparameters=FAST,
                      ranges={"lr0": (0.001, 0.02)}, max_jobs=2, max_parallel=1)
    assert tuning.wait(poll=1, timeout=900) == "Completed", sagemaker.errors
    assert not sagemaker.errors
    best = tuning.best()
    assert best["objective"] == "val:best_mAP50-95" and best["job_name"].startswith(tuning.name)
    assert set(best["hyperparameters"]) == {"lr0"}
    scores, finals = [], []
    s3 = sagemaker.session.client("s3")
    for name in [n for n in sagemaker.requests if n.startswith(tuning.name)]:
        assert sagemaker.requests[name]["HyperParameters"]["_tuning_objective_metric"] == "val:best_mAP50-95"
        final = {m["MetricName"]: m["Value"] for m in
                 sagemaker.session.client("sagemaker", endpoint_url=sagemaker.endpoint)
                 .describe_training_job(TrainingJobName=name)["FinalMetricDataList"]}
        scores.append(final["val:best_mAP50-95"])
        finals.append(final["final:mAP50-95"])
        # one checkpoint prefix for the tuning job; each training job writes only under its own folder in it
        prefix = f"jobs/{tuning.name}/checkpoints/"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]
        assert any(k.startswith(f"{prefix}{name}/") and k.endswith("weights/last.pt") for k in keys), keys
    assert len(scores) == 2 and best["value"] == max(scores)
    model = tuning.fetch_model(dest=tmp_path / "best")
    assert model.job_name == best["job_name"] and model.best.name == "best.pt"
    assert cli(["tune-best", tuning.name]) == 0
    assert json.loads(capsys.readouterr().out)["job_name"] == best["job_name"]

    # the tuner's jobs on a leaderboard, by SageMaker job name (fetched from moto's S3): the best one first
    names = [n for n in sagemaker.requests if n.startswith(tuning.name)]
    board = leaderboard(names, out=tmp_path / "lb", timed=False)
    assert board.entries[0].map50_95 == pytest.approx(max(finals), abs=1e-4)
    assert {e.name for e in board.entries} == set(names)
    assert all(e.epochs == 2 and e.imgsz == 64 for e in board.entries)


def test_cli_pipeline_and_tune(aws, capsys):
    job = ["--image", IMAGE, "--role", ROLE, "--output-path", OUT, "--hp", "epochs=3"]
    assert cli(["pipeline", "create", "cli-retrain", "--data", DATA, "--marker", "_READY", *job]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["parameters"]["hp_epochs"] == "3" and created["event_pattern"]["detail"]["object"]["key"] == [
        "incoming/pcb/_READY"]
    assert cli(["pipeline", "start", "cli-retrain", "--param", "hp_epochs=4"]) == 0
    assert "execution" in json.loads(capsys.readouterr().out)
    assert cli(["pipeline", "start", "cli-retrain", "--param", "epochs=4"]) == 2
    assert "has no parameter epochs" in capsys.readouterr().err
    assert cli(["pipeline", "create", "cli-retrain", *job]) == 2
    assert "needs --data" in capsys.readouterr().err

    tune = ["tune", "--train", DATA, *job, "--range", "lr0=0.001:0.1:log", "--range", "optimizer=SGD,AdamW"]
    assert cli([*tune, "--dry-run"]) == 0
    request = json.loads(capsys.readouterr().out)["CreateHyperParameterTuningJob"]
    check_against_service_model("CreateHyperParameterTuningJob", request)
    assert cli([*tune, "--range", "imgsz=big:640", "--dry-run"]) == 2
    assert "--range bound 'big' is not a number" in capsys.readouterr().err
    assert cli(tune) == 1
    assert "channel 'train': nothing under s3://" in capsys.readouterr().err
    aws.client("s3").put_object(Bucket=BUCKET, Key="incoming/pcb/images/a.jpg", Body=b"x")
    assert cli(tune) == 0
    name = json.loads(capsys.readouterr().out)["tuning_job"]
    assert aws.client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

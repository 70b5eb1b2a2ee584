"""The Model Registry behind the moto server: every request checked, and what moto 5.2 gets wrong put right.

moto records model package groups and versions (``CustomerMetadataProperties``, ``ModelMetrics`` and
``MetadataProperties`` come back as sent; checked by ``test_registry``), but:

* ``UpdateModelPackage`` sets every field it was not given to nothing: approving a version erases its
  ``CustomerMetadataProperties`` and ``ApprovalDescription``. SageMaker changes only the fields given;
  the double does that;
* ``DeleteModelPackageGroup`` is not implemented; the double deletes an empty group and refuses one that
  still holds versions (as SageMaker does: "delete the model packages in the group first");
* ``ListTags`` on a versioned package's ARN (``model-package/<group>/<n>``) is a 500 (nothing here reads them).

``deny`` plays an IAM policy that lacks an action: the operation answers AccessDeniedException, as SageMaker
does, after the request was checked.
"""

from __future__ import annotations

import json
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.responses import SageMakerResponse

from tests.sdk.double import check_against_service_model

OPERATIONS = [("CreateModelPackageGroup", "create_model_package_group"),
              ("CreateModelPackage", "create_model_package"),
              ("DescribeModelPackage", "describe_model_package"),
              ("DescribeModelPackageGroup", "describe_model_package_group"),
              ("ListModelPackages", "list_model_packages"),
              ("ListModelPackageGroups", "list_model_package_groups")]


class RegistryDouble:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.deny: set[str] = set()

    def operations(self) -> list[str]:
        return [op for op, _ in self.requests]

    def install(self, monkeypatch: Any) -> None:
        double = self

        def denied(operation: str) -> Any:
            return 400, {"status": 400, "x-amzn-ErrorType": "AccessDeniedException"}, json.dumps(
                {"__type": "AccessDeniedException", "message": f"User: arn:aws:iam::123456789012:user/ci is not "
                 f"authorized to perform: sagemaker:{operation} because no identity-based policy allows the "
                 f"sagemaker:{operation} action"})

        def checked(operation: str, original: Any) -> Any:
            def handler(response: SageMakerResponse) -> Any:
                request = json.loads(response.body or "{}")
                check_against_service_model(operation, request)
                double.requests.append((operation, request))
                if operation in double.deny:
                    return denied(operation)
                return original(response)
            return handler

        for operation, method in OPERATIONS:
            monkeypatch.setattr(SageMakerResponse, method, checked(operation, getattr(SageMakerResponse, method)))

        def update_model_package(response: SageMakerResponse) -> Any:
            request = json.loads(response.body)
            check_against_service_model("UpdateModelPackage", request)
            double.requests.append(("UpdateModelPackage", request))
            if "UpdateModelPackage" in double.deny:
                return denied("UpdateModelPackage")
            package = response.sagemaker_backend.describe_model_package(request["ModelPackageArn"])
            if "ModelApprovalStatus" in request:
                package.set_model_approval_status(request["ModelApprovalStatus"])
            if "ApprovalDescription" in request:
                package.approval_description = request["ApprovalDescription"]
            if "CustomerMetadataProperties" in request:
                package.customer_metadata_properties = {**(package.customer_metadata_properties or {}),
                                                        **request["CustomerMetadataProperties"]}
            package.modifications_done()
            return ActionResult({"ModelPackageArn": package.arn})

        def delete_model_package_group(response: SageMakerResponse) -> Any:
            request = json.loads(response.body)
            check_against_service_model("DeleteModelPackageGroup", request)
            double.requests.append(("DeleteModelPackageGroup", request))
            backend = response.sagemaker_backend
            name = request["ModelPackageGroupName"]
            backend.describe_model_package_group(name)  # ValidationException when there is none
            if any(p.model_package_group_name == name for p in backend.model_packages.values()):
                raise ValidationError(f"Model package group {name} still holds model packages: delete them first")
            del backend.model_package_groups[name]
            return EmptyResult()

        monkeypatch.setattr(SageMakerResponse, "update_model_package", update_model_package)
        monkeypatch.setattr(SageMakerResponse, "delete_model_package_group", delete_model_package_group,
                            raising=False)

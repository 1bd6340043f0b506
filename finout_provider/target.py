"""One cluster's S3 target: where its export lands and how to reach it (cheap to import: no boto3).

Built once from the clusters file (:attr:`~finout_provider.config.clusters.ClusterConfig.target`) and
passed whole to every task, the CLI and the fleet page. Its fields are templated: a task that
names ``target`` among its ``template_fields`` has Airflow render the fields named here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from finout_provider.s3.layout import cluster_root, normalize_prefix, validate_bucket, validate_cluster_name

if TYPE_CHECKING:
    from finout_provider.hooks.s3 import FinoutS3Hook
    from finout_provider.s3.folder import ClusterFolder
    from finout_provider.s3.store import S3Store


@dataclass
class S3Target:
    """
    ``s3://<bucket>/<prefix>/<cluster>/`` and the AWS connection that reaches it.

    :param cluster: CLUSTER_NAME, the cluster's folder under the prefix. (templated)
    :param bucket: S3_BUCKET, a bare bucket name. (templated)
    :param prefix: S3_PREFIX, the folder inside the bucket. (templated)
    :param aws_conn_id: AWS_CONN_ID, the AWS connection for S3. (templated)
    :param role_arn: ROLE_ARN, a role assumed on top of the connection. (templated)
    :param role_external_id: ROLE_EXTERNAL_ID, the external id of that role.
    :param kms_key_id: S3_KMS_KEY_ID: uploads use SSE-KMS with this key. (templated)

    Mutable only so that Airflow can render its templated fields in place.
    """

    template_fields: ClassVar[tuple[str, ...]] = (
        "cluster",
        "bucket",
        "prefix",
        "aws_conn_id",
        "role_arn",
        "kms_key_id",
    )

    cluster: str
    bucket: str
    prefix: str
    aws_conn_id: str | None = "aws_default"
    role_arn: str | None = None
    role_external_id: str | None = None
    kms_key_id: str | None = None

    def checked(self) -> S3Target:
        """This target with its names validated and the prefix normalized (``ValueError`` naming the
        key to fix otherwise)."""
        return replace(
            self,
            cluster=validate_cluster_name(self.cluster),
            bucket=validate_bucket(self.bucket),
            prefix=normalize_prefix(self.prefix),
        )

    @property
    def root(self) -> str:
        """``<prefix>/<cluster>/``: everything of the cluster lives below it."""
        return cluster_root(self.prefix, self.cluster)

    @property
    def uri(self) -> str:
        """``s3://<bucket>/<prefix>/<cluster>``: the export's Asset."""
        return f"s3://{self.bucket}/{self.root.rstrip('/')}"

    def upload_args(self) -> dict[str, Any]:
        """What every upload carries: SSE-KMS with the key, when one is set."""
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id} if self.kms_key_id else {}

    def hook(self) -> FinoutS3Hook:
        """The Amazon provider's S3 hook of the target's connection, with ROLE_ARN assumed."""
        from finout_provider.hooks.s3 import FinoutS3Hook

        return FinoutS3Hook(
            self.aws_conn_id,
            role_arn=self.role_arn,
            role_external_id=self.role_external_id,
            extra_args=self.upload_args(),
        )

    def folder(self, s3: S3Store) -> ClusterFolder:
        """The cluster's folder, read through ``s3``."""
        from finout_provider.s3.folder import ClusterFolder

        target = self.checked()
        return ClusterFolder(s3, target.bucket, target.prefix, target.cluster)

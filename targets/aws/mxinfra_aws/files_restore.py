"""Production's files-restore state machine: the only way a backup's files go back into production's bucket.

AWS Backup restores an S3 recovery point into the bucket itself (its objects become the current versions
again), and nothing in how IAM authorises `backup:StartRestoreJob` can ask for a backup taken before it: a
holder of production's `backups` role who may call it directly could replace production's files without a
way back, whatever `mxinfra backup restore` does first. So on production the role may not
(policies.aws_backup_statements denies it on S3 recovery points); it may start this machine, which:

0. checks its input, then refuses to run beside another of its executions, an archive restore or a
   download's export (which count its executions too: export.one_at_a_time; a count is eventually
   consistent, so two starts within moments can both run);
1. takes an on-demand backup of the database the app uses and of the bucket into the vault, as `mxinfra
   backup create` does, and waits for it (export.backup_first: the same states the archive restore runs);
2. reads the recovery point the input names (`{"files": "<recovery point ARN>"}`, the only input) in the
   environment's vault, and refuses anything but a completed backup of the environment's own bucket;
3. starts its restore into the bucket, as the environment's backup role, with the point's restore metadata
   and the bucket fixed as its destination, follows the job to its end, and ends: its output the backup
   taken first (`backedUp`) and the restore job (`restoreJob`).

The database's recovery points are restored by the holder directly: always into a new instance (the backup
role's bounds), never over the one the app uses. Everything here is pure but `create`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backup_actions import FILES_RESTORE_JOB
from .export import BACKUP_RETRY, backup_first, countdown, one_at_a_time, polls_left
from .policies import Arns, waits_for

if TYPE_CHECKING:
    import pulumi_aws as aws

    from mxinfra.target import EnvironmentContext

    from .config import AwsConfig

DESCRIBE_RECOVERY_POINT = "arn:{partition}:states:::aws-sdk:backup:describeRecoveryPoint"
GET_RESTORE_METADATA = "arn:{partition}:states:::aws-sdk:backup:getRecoveryPointRestoreMetadata"
START_RESTORE_JOB = "arn:{partition}:states:::aws-sdk:backup:startRestoreJob"
DESCRIBE_RESTORE_JOB = "arn:{partition}:states:::aws-sdk:backup:describeRestoreJob"
# How long the machine follows its restore job: polls this far apart, as long as the command waits for a
# restore job (backup_actions.RESTORE_TIMEOUT). The machine runs as long as the job writes the bucket, so
# the other machines' count of its executions keeps them from writing or reading it meanwhile.
RESTORE_POLL_SECONDS, RESTORE_POLLS = 60, 360
# AWS Backup's restore job states after which it writes nothing more.
_RESTORE_ENDED_BADLY = ("ABORTED", "FAILED")
# The recovery point states AWS Backup restores from (backup_actions.RESTORABLE).
_RESTORABLE = ("COMPLETED", "AVAILABLE")


def definition(a: Arns, keep_days: int) -> dict[str, Any]:
    """The machine (see the module docstring): the input checked, a backup taken first (kept `keep_days`),
    then one restore of the input's recovery point into the environment's bucket, if it is one of that
    bucket's. Pure."""
    p = a.partition
    vault = a.backup_vault_name
    # once the backup is taken: a failure before the restore's call ends the execution, nothing restored (the
    # backup stays, recorded); one of the call itself may come after AWS started the job (its answer lost)
    def call(resource: str, parameters: dict[str, Any], nxt: str, *, then: str = "NotRestored", **extra: Any) -> dict[str, Any]:
        caught = {"Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": then}]}
        return {"Type": "Task", "Resource": resource.format(partition=p), "Parameters": parameters, "Retry": BACKUP_RETRY, "Next": nxt, **extra, **caught}

    point = {"BackupVaultName": vault, "RecoveryPointArn.$": "$.files"}
    mine = [
        {"Variable": "$.point.resource", "StringEquals": a.bucket_arn},
        {"Variable": "$.point.type", "StringEquals": "S3"},
        {"Or": [{"Variable": "$.point.status", "StringEquals": s} for s in _RESTORABLE]},
    ]
    states: dict[str, Any] = {
        "Input": {
            "Type": "Choice",
            "Choices": [{"And": [{"Variable": "$.files", "IsPresent": True}, {"Variable": "$.files", "IsString": True}], "Next": "Clean"}],
            "Default": "BadInput",
        },
        "BadInput": {"Type": "Fail", "Error": "mxinfra.BadInput", "Cause": 'the input must be {"files": "<a recovery point of the bucket>"} (mxinfra backup restore --id): nothing was backed up or restored'},
        # from here on the state holds the point and what the machine writes itself, nothing else of the input
        "Clean": {"Type": "Pass", "Parameters": {"files.$": "$.files"}, "Next": "OneAtATime"},
        # nor beside an archive restore (which replaces the files too) or a download's export (which reads them)
        **one_at_a_time(a.files_restore_machine_arn, p, "BackupFirst", waits_for(a, "files-restore")),
        "Busy": {"Type": "Fail", "Error": "mxinfra.FilesRestoreRunning", "Cause": "another restore of the files, an archive restore or a download's export of this environment is running: one at a time; nothing was backed up or restored"},
        **backup_first(a, keep_days, "ReadPoint"),
        "ReadPoint": call(DESCRIBE_RECOVERY_POINT, point, "PointMine", ResultSelector={"resource.$": "$.ResourceArn", "type.$": "$.ResourceType", "status.$": "$.Status"}, ResultPath="$.point"),
        "PointMine": {"Type": "Choice", "Choices": [{"And": mine, "Next": "ReadMetadata"}], "Default": "NotThisBucket"},
        "NotThisBucket": {
            "Type": "Pass",
            "Parameters": {"Error": "mxinfra.NotThisBucket", "Cause.$": f"States.Format('{{}} is not a completed backup of the bucket {a.bucket_name} in the vault {vault}: nothing was restored', $.files)"},
            "ResultPath": "$.failure",
            "Next": "Failed",
        },
        "ReadMetadata": call(GET_RESTORE_METADATA, point, "Destination", ResultSelector={"metadata.$": "$.RestoreMetadata"}, ResultPath="$.restore"),
        # the bucket the backup role's bounds reach, whatever the metadata says (a new bucket it may not make)
        "Destination": {"Type": "Pass", "Result": {"DestinationBucketName": a.bucket_name, "NewBucket": "false"}, "ResultPath": "$.destination", "Next": "Merge"},
        "Merge": {"Type": "Pass", "Parameters": {"metadata.$": "States.JsonMerge($.restore.metadata, $.destination, false)"}, "ResultPath": "$.restore", "Next": "Restore"},
        "Restore": call(
            START_RESTORE_JOB,
            {
                "RecoveryPointArn.$": "$.files",
                "Metadata.$": "$.restore.metadata",
                "IamRoleArn": a.role_arn("backup"),
                "ResourceType": "S3",
                # the backup's token, made once: the Task's retries are this one job
                "IdempotencyToken.$": "States.Format('{}-restore', $.backupToken.token)",
                "CopySourceTagsToRestoredResource": True,
            },
            "RestorePolls",
            then="MaybeStarted",
            ResultSelector={"job.$": "$.RestoreJobId"},
            ResultPath="$.restoreJob",
        ),
        # followed to its end: until then the job writes the bucket, and the execution runs (one at a time)
        **countdown("Restore", RESTORE_POLLS, RESTORE_POLL_SECONDS, "RestoreCheck"),
        "RestoreCheck": call(DESCRIBE_RESTORE_JOB, {"RestoreJobId.$": "$.restoreJob.job"}, "RestoreDone", then="NotFollowed", ResultSelector={"status.$": "$.Status"}, ResultPath="$.restoreState"),
        "RestoreDone": {
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.restoreState.status", "StringEquals": "COMPLETED", "Next": "Restored"},
                {"Or": [{"Variable": "$.restoreState.status", "StringEquals": s} for s in _RESTORE_ENDED_BADLY], "Next": "RestoreFailed"},
                polls_left("Restore"),
            ],
            "Default": "RestoreTimedOut",
        },
        "Restored": {"Type": "Pass", "Parameters": {"backedUp.$": "$.backedUp", f"{FILES_RESTORE_JOB}.$": "$.restoreJob.job"}, "End": True},
        # the job ran (it may have put back some of the files): its id in every cause, to follow it with
        **{
            name: {
                "Type": "Pass",
                "Parameters": {"Error": "mxinfra.FilesMaybeRestored", "Cause.$": f"States.Format('the restore job {{}} of the files {why}', $.restoreJob.job)"},
                "ResultPath": "$.failure",
                "Next": "Failed",
            }
            for name, why in (
                ("RestoreFailed", "ended FAILED or ABORTED: some files may have been put back"),
                ("RestoreTimedOut", f"did not end within {RESTORE_POLL_SECONDS * RESTORE_POLLS} s: it may still run"),
                ("NotFollowed", "could not be followed: it may still run"),
            )
        },
        "NotRestored": {
            "Type": "Pass",
            "Parameters": {"Error": "mxinfra.FilesNotRestored", "Cause.$": "States.Format('the restore of the files was not started ({}): nothing was restored', $.failure.Cause)"},
            "ResultPath": "$.failure",
            "Next": "Failed",
        },
        "MaybeStarted": {
            "Type": "Pass",
            "Parameters": {"Error": "mxinfra.FilesMaybeRestored", "Cause.$": "States.Format('starting the restore of the files failed ({}): AWS may have started it all the same', $.failure.Cause)"},
            "ResultPath": "$.failure",
            "Next": "Failed",
        },
        "Failed": {"Type": "Fail", "ErrorPath": "$.failure.Error", "CausePath": "$.failure.Cause"},
    }
    return {"Comment": f"{a.naming.prefix}: back production up, then restore a backup's files into its bucket (mxinfra backup restore)", "StartAt": "Input", "States": states}


def create(ctx: EnvironmentContext, cfg: AwsConfig, a: Arns) -> aws.sfn.StateMachine | None:
    """The machine and its role, on production with backups on; None elsewhere (the `backups` role restores
    a bucket's recovery point itself there)."""
    import json

    import pulumi_aws as aws

    from mxinfra.backups import of_environment

    from . import policies
    from .backups import on_demand_days
    from .rotation import service_trust
    from .runtime import service_role

    if not a.backs_up_first:
        return None
    runner = service_role(
        ctx, cfg, a, "files-restore-runner", service_trust(a, "states", a.files_restore_machine_arn), policies.files_restore_runner_policy(a),
        "Step Functions: back production up, then restore a backup's files into its bucket; nothing else",
    )
    return aws.sfn.StateMachine(
        ctx.naming.logical("files-restore-machine"),
        name=a.files_restore_name,
        role_arn=runner.arn,
        definition=json.dumps(definition(a, on_demand_days(of_environment(ctx.environment))), sort_keys=True),
        tags=dict(ctx.tags),
        opts=ctx.opts(),
    )

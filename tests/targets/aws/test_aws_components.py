"""The AWS target under the mock runtime: the exact child contract per role."""

from __future__ import annotations

import json

import pytest

from mxinfra.components import APP_TYPE, ENVIRONMENT_TYPE, MendixApp
from mxinfra.testing import Sealed
from mxinfra_aws.runtime import TLS_POLICY

from awshelpers import ACCOUNT, REGION, SECRET_VALUES, config, deployment, lint, walk

ROLES = ("test", "acceptance", "production")
CLUSTER = "orders-aws-production-cluster"


def run(pulumi_run, role: str, **kw):
    d = deployment(config(role, **kw))
    res = pulumi_run(lambda: MendixApp("orders", {"deployment": d}), stack="aws-production", project="orders")
    return d, res


@pytest.fixture(params=ROLES)
def role_run(request, pulumi_run):
    return (request.param, *run(pulumi_run, request.param))


EXPECTED_CHILDREN = {
    "alb-sg": "aws:ec2/securityGroup:SecurityGroup",
    "service-sg": "aws:ec2/securityGroup:SecurityGroup",
    "db-sg": "aws:ec2/securityGroup:SecurityGroup",
    "alb-in-443-0": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "alb-in-80-0": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "alb-out-runtime": "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "service-in-alb": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "service-out-endpoints": "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "service-out-db": "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "db-in-service": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "files": "aws:s3/bucket:Bucket",
    "files-public-access": "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "files-ownership": "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "files-encryption": "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "files-versioning": "aws:s3/bucketVersioning:BucketVersioning",
    "files-lifecycle": "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "files-policy": "aws:s3/bucketPolicy:BucketPolicy",
    "db-subnets": "aws:rds/subnetGroup:SubnetGroup",
    "db": "aws:rds/instance:Instance",
    "logs": "aws:cloudwatch/logGroup:LogGroup",
    "runtime-secret": "aws:secretsmanager/secret:Secret",
    "runtime-secret-value": "aws:secretsmanager/secretVersion:SecretVersion",
    "execution-role": "aws:iam/role:Role",
    "execution-role-policy": "aws:iam/rolePolicy:RolePolicy",
    "task-role": "aws:iam/role:Role",
    "task-role-policy": "aws:iam/rolePolicy:RolePolicy",
    "task": "aws:ecs/taskDefinition:TaskDefinition",
    "alb": "aws:lb/loadBalancer:LoadBalancer",
    "web": "aws:lb/targetGroup:TargetGroup",
    "https": "aws:lb/listener:Listener",
    "http": "aws:lb/listener:Listener",
    "service": "aws:ecs/service:Service",
    "alerts": "aws:sns/topic:Topic",
    "alarm-running-tasks": "aws:cloudwatch/metricAlarm:MetricAlarm",
    # the RDS password's rotation schedule, and the redeploy it triggers
    "db-password-rotation": "aws:secretsmanager/secretRotation:SecretRotation",
    "redeploy-role": "aws:iam/role:Role",
    "redeploy-role-policy": "aws:iam/rolePolicy:RolePolicy",
    "redeploy": "aws:sfn/stateMachine:StateMachine",
    "events-role": "aws:iam/role:Role",
    "events-role-policy": "aws:iam/rolePolicy:RolePolicy",
    "db-rotated": "aws:cloudwatch/eventRule:EventRule",
    "db-rotated-redeploy": "aws:cloudwatch/eventTarget:EventTarget",
    # AWS Backup (backups on by default): vault, plan, selection and the role the jobs run as
    "backup-vault": "aws:backup/vault:Vault",
    "backup-plan": "aws:backup/plan:Plan",
    "backup-selection": "aws:backup/selection:Selection",
    "backup-role": "aws:iam/role:Role",
    "backup-role-policy": "aws:iam/rolePolicy:RolePolicy",
    **{f"backup-role-{k}": "aws:iam/rolePolicyAttachment:RolePolicyAttachment" for k in ("backup", "restore", "s3-backup", "s3-restore")},
    **{f"role-{p}": "aws:iam/role:Role" for p in ("deploy", "monitor", "backups", "api", "alerts", "manage")},
    **{f"role-{p}-policy": "aws:iam/rolePolicy:RolePolicy" for p in ("deploy", "monitor", "backups", "api", "alerts", "manage")},
}
# With two or more instances: the followers' task definition, service and alarm (and nothing else).
FOLLOWER_CHILDREN = {
    "follower-task": "aws:ecs/taskDefinition:TaskDefinition",
    "follower-service": "aws:ecs/service:Service",
    "alarm-follower-running-tasks": "aws:cloudwatch/metricAlarm:MetricAlarm",
}
# Production only: the vault's lock.
PRODUCTION_CHILDREN = {
    "backup-vault-lock": "aws:backup/vaultLockConfiguration:VaultLockConfiguration",
    # the only way a backup's files go back into production's bucket (files_restore.py)
    "files-restore-runner-role": "aws:iam/role:Role",
    "files-restore-runner-role-policy": "aws:iam/rolePolicy:RolePolicy",
    "files-restore-machine": "aws:sfn/stateMachine:StateMachine",
}
UNTAGGABLE = {
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:backup/selection:Selection",
    "aws:backup/vaultLockConfiguration:VaultLockConfiguration",
    "aws:secretsmanager/secretVersion:SecretVersion",
    "aws:secretsmanager/secretRotation:SecretRotation",
    "aws:cloudwatch/eventTarget:EventTarget",
}
# Guarded roles (acceptance, production): the final snapshot's random suffix, created once per instance.
GUARDED_CHILDREN = {"db-final-suffix": "random:index/randomId:RandomId"}
BUCKET_SETTINGS = {t for t in EXPECTED_CHILDREN.values() if t.startswith("aws:s3/bucket") and t != "aws:s3/bucket:Bucket"}


def test_children_exactly(role_run):
    role, d, res = role_run
    env = res.one(ENVIRONMENT_TYPE, f"orders-{role}")
    app = res.one(APP_TYPE, "orders")
    cluster = res.one("aws:ecs/cluster:Cluster", "orders-shared-cluster")
    assert cluster.parent == app.urn
    assert cluster.inputs["name"] == CLUSTER
    assert cluster.input("settings") == [{"name": "containerInsights", "value": "enabled"}]
    children = {r.name: r for r in res.descendants(env) if r.type.startswith("aws:")}
    # the production config runs 2 instances: a leader and one follower
    expected = {f"orders-{role}-{k}": t for k, t in {**EXPECTED_CHILDREN, **(FOLLOWER_CHILDREN | PRODUCTION_CHILDREN if role == "production" else {})}.items()}
    assert {n: r.type for n, r in children.items()} == expected
    random = {r.name: r for r in res.descendants(env) if r.type.startswith("random:")}
    assert {n: r.type for n, r in random.items()} == ({f"orders-{role}-{k}": t for k, t in GUARDED_CHILDREN.items()} if role != "test" else {})
    for r in random.values():
        assert r.parent == env.urn and r.inputs["byteLength"] == 4
    tags = dict(d.environment(role).tags)
    per_release = {"mxinfra:package-sha256", "mxinfra:model-version"}
    stable = {k: v for k, v in tags.items() if k not in per_release}
    runs_the_package = {"aws:ecs/taskDefinition:TaskDefinition", "aws:ecs/service:Service"}
    for r in children.values():
        assert r.parent == env.urn, r.name
        if "tags" in r.inputs or r.type not in UNTAGGABLE | BUCKET_SETTINGS:
            # what runs the package carries its hash; nothing else changes with a release (issue 10.2)
            want = tags if r.type in runs_the_package else stable
            assert {k: r.inputs["tags"][k] for k in want} == want, r.name
            assert r.type in runs_the_package or not per_release & set(r.inputs["tags"]), r.name


def test_runtime_contract(role_run):
    role, d, res = role_run
    p = f"orders-{role}"
    svc = res.one("aws:ecs/service:Service", f"{p}-service")
    i = svc.inputs
    assert i["name"] == p and i["launchType"] == "FARGATE"
    assert i["desiredCount"] == 1  # the leader; production's second instance is a follower
    assert i["networkConfiguration"]["subnets"] == ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
    assert i["networkConfiguration"]["assignPublicIp"] is False
    assert i["loadBalancers"][0]["containerName"] == "mendix" and i["loadBalancers"][0]["containerPort"] == 8080
    assert i["deploymentMinimumHealthyPercent"] == 0 and i["deploymentMaximumPercent"] == 100
    assert i["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert i["healthCheckGracePeriodSeconds"] == 600
    task = res.one("aws:ecs/taskDefinition:TaskDefinition", f"{p}-task").inputs
    assert (task["family"], task["cpu"], task["memory"], task["networkMode"]) == (p, "512", "2048", "awsvpc")
    assert task["requiresCompatibilities"] == ["FARGATE"]
    logs = res.one("aws:cloudwatch/logGroup:LogGroup", f"{p}-logs").inputs
    assert logs["name"] == f"/mxinfra/orders/{role}"
    assert logs["retentionInDays"] == {"test": 14, "acceptance": 30, "production": 365}[role]
    https = res.one("aws:lb/listener:Listener", f"{p}-https").inputs
    assert (https["port"], https["protocol"], https["sslPolicy"]) == (443, "HTTPS", TLS_POLICY)
    assert https["certificateArn"].startswith("arn:aws:acm:")
    http = res.one("aws:lb/listener:Listener", f"{p}-http").inputs
    assert http["defaultActions"][0]["redirect"] == {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}
    tg = res.one("aws:lb/targetGroup:TargetGroup", f"{p}-web").inputs
    assert (tg["port"], tg["protocol"], tg["targetType"]) == (8080, "HTTP", "ip")
    assert tg["healthCheck"]["path"] == "/" and tg["healthCheck"]["matcher"] == "200-399"
    alb = res.one("aws:lb/loadBalancer:LoadBalancer", f"{p}-alb").inputs
    assert alb["enableDeletionProtection"] is (role == "production") and alb["dropInvalidHeaderFields"] is True
    # the alarm reports to the topic the alerts role may subscribe to
    assert res.one("aws:sns/topic:Topic", f"{p}-alerts").inputs["name"] == f"{p}-alerts"


def test_network_rules(role_run):
    role, _, res = role_run
    p = f"orders-{role}"
    for port in (443, 80):
        rule = res.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", f"{p}-alb-in-{port}-0").inputs
        assert (rule["fromPort"], rule["toPort"], rule["cidrIpv4"], rule["securityGroupId"]) == (port, port, "198.51.100.0/24", f"{p}-alb-sg-id")
    svc_in = res.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", f"{p}-service-in-alb").inputs
    assert (svc_in["fromPort"], svc_in["referencedSecurityGroupId"], svc_in["securityGroupId"]) == (8080, f"{p}-alb-sg-id", f"{p}-service-sg-id")
    db_in = res.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", f"{p}-db-in-service").inputs
    assert (db_in["fromPort"], db_in["referencedSecurityGroupId"], db_in["securityGroupId"]) == (5432, f"{p}-service-sg-id", f"{p}-db-sg-id")
    # nothing else may reach the service or the database
    ingress = [r for r in res.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")]
    assert [r.name for r in ingress if r.inputs["securityGroupId"] == f"{p}-db-sg-id"] == [f"{p}-db-in-service"]
    assert [r.name for r in ingress if r.inputs["securityGroupId"] == f"{p}-service-sg-id"] == [f"{p}-service-in-alb"]
    # the service's egress: the database and the VPC's endpoints, nothing to the internet (issue 10.10)
    egress = {r.name: r.inputs for r in res.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") if r.inputs["securityGroupId"] == f"{p}-service-sg-id"}
    assert set(egress) == {f"{p}-service-out-db", f"{p}-service-out-endpoints"}
    assert (egress[f"{p}-service-out-db"]["fromPort"], egress[f"{p}-service-out-db"]["referencedSecurityGroupId"]) == (5432, f"{p}-db-sg-id")
    endpoints = egress[f"{p}-service-out-endpoints"]
    assert (endpoints["fromPort"], endpoints["toPort"], endpoints["cidrIpv4"]) == (443, 443, "10.0.0.0/16")
    assert not any(r.get("cidrIpv4") == "0.0.0.0/0" or r.get("cidrIpv6") == "::/0" for r in egress.values())


def test_database_protection_per_role(role_run):
    role, _, res = role_run
    p = f"orders-{role}"
    db = res.one("aws:rds/instance:Instance", f"{p}-db")
    i = db.inputs
    assert i["engine"] == "postgres" and i["storageEncrypted"] is True and i["manageMasterUserPassword"] is True
    assert "password" not in i and i["publiclyAccessible"] is False
    assert i["dbSubnetGroupName"] == f"{p}-db" and i["vpcSecurityGroupIds"] == [f"{p}-db-sg-id"]
    assert res.one("aws:rds/subnetGroup:SubnetGroup", f"{p}-db-subnets").inputs["subnetIds"] == ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
    assert i["backupRetentionPeriod"] == {"test": 1, "acceptance": 7, "production": 30}[role]
    assert i["multiAz"] is (role == "production")
    guarded = role != "test"
    assert i["deletionProtection"] is guarded and i["skipFinalSnapshot"] is (not guarded)
    # the final snapshot's name ends in a random suffix (known only once created), so a second
    # destroy-and-recreate does not collide with the first one's snapshot
    assert ("finalSnapshotIdentifier" in i) is guarded
    assert (db.protect, db.retain_on_delete) == ((True, True) if role == "production" else (False, False))


def test_bucket_per_role(role_run):
    role, _, res = role_run
    p = f"orders-{role}"
    bucket = res.one("aws:s3/bucket:Bucket", f"{p}-files")
    assert bucket.inputs["bucket"] == f"{p}-files-{ACCOUNT}-{REGION}"
    assert bucket.inputs["forceDestroy"] is (role == "test")
    assert (bucket.protect, bucket.retain_on_delete) == ((True, True) if role == "production" else (False, False))
    pab = res.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", f"{p}-files-public-access").inputs
    assert all(pab[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    sse = res.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", f"{p}-files-encryption").inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    assert res.one("aws:s3/bucketVersioning:BucketVersioning", f"{p}-files-versioning").input("versioningConfiguration.status") == "Enabled"
    rule = res.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", f"{p}-files-lifecycle").input("rules.0")
    assert rule["status"] == "Enabled" and rule["noncurrentVersionExpiration"]["noncurrentDays"] > 0
    doc = json.loads(res.one("aws:s3/bucketPolicy:BucketPolicy", f"{p}-files-policy").inputs["policy"])
    assert doc["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_access_roles_per_role(role_run):
    role, _, res = role_run
    p = f"orders-{role}"
    for perm in ("deploy", "monitor", "backups", "api", "alerts", "manage"):
        r = res.one("aws:iam/role:Role", f"{p}-role-{perm}")
        trust = json.loads(r.inputs["assumeRolePolicy"])
        stmt = trust["Statement"][0]
        assert r.inputs["name"] == f"{p}-{perm}" and r.inputs["path"] == "/mxinfra/"
        assert lint(trust, trust_for=f"arn:aws:iam::{ACCOUNT}:role/mxinfra/{p}-{perm}") == []
        # every production role a person assumes, alerts included (issue 10.3)
        if role == "production":
            # MFA age at assume time plus the session: 8 hours in all (issue 19, F21)
            assert stmt["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}, "NumericLessThanEquals": {"aws:MultiFactorAuthAge": "14400"}}
            assert r.inputs["maxSessionDuration"] == 14400
        else:
            assert "Condition" not in stmt and r.inputs["maxSessionDuration"] == 3600
        policy = json.loads(res.one("aws:iam/rolePolicy:RolePolicy", f"{p}-role-{perm}-policy").inputs["policy"])
        assert lint(policy) == []
    monitor = json.loads(res.one("aws:iam/role:Role", f"{p}-role-monitor").inputs["assumeRolePolicy"])
    assert monitor["Statement"][0]["Principal"]["AWS"] == [f"arn:aws:iam::{ACCOUNT}:role/ReleaseManagers", "arn:aws:iam::210987654321:root"]


def test_runtime_role_policies_in_place(role_run):
    role, _, res = role_run
    p = f"orders-{role}"
    for kind in ("task", "execution"):
        r = res.one("aws:iam/role:Role", f"{p}-{kind}-role")
        trust = json.loads(r.inputs["assumeRolePolicy"])
        assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert lint(trust, trust_for=f"arn:aws:iam::{ACCOUNT}:role/mxinfra/{p}-{kind}") == []
        assert lint(json.loads(res.one("aws:iam/rolePolicy:RolePolicy", f"{p}-{kind}-role-policy").inputs["policy"])) == []
    task = res.one("aws:ecs/taskDefinition:TaskDefinition", f"{p}-task").inputs
    # preview: the ARNs come from the cloud
    assert not isinstance(task["executionRoleArn"], str) and not isinstance(task["taskRoleArn"], str)


def test_no_plaintext_secret_in_any_input(role_run):
    _, _, res = role_run
    for r in res:
        for path, leaf in _leaves(r.inputs):
            if isinstance(leaf, str):
                for value in SECRET_VALUES:
                    if value in leaf:
                        assert path.startswith("SEALED"), f"{r.type} {r.name} carries a secret at {path}"


def _leaves(value, path="", sealed=False):
    if isinstance(value, Sealed):
        yield from _leaves(value.value, "SEALED" + path, True)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}", sealed)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]", sealed)
    else:
        yield path, value


def test_secret_values_only_in_the_runtime_secret(pulumi_run):
    _, res = run(pulumi_run, "production")
    version = res.one("aws:secretsmanager/secretVersion:SecretVersion", "orders-production-runtime-secret-value")
    assert isinstance(version.inputs["secretString"], Sealed)
    stored = json.loads(version.inputs["secretString"].value)
    assert stored == {"ADMIN_PASSWORD": SECRET_VALUES[0], "LICENSE_KEY": SECRET_VALUES[1], "MX_Encryption_EncryptionKey": SECRET_VALUES[2]}
    holders = {r.name for r in res for leaf in walk(r.inputs) if isinstance(leaf, str) and any(v in leaf for v in SECRET_VALUES)}
    assert holders == {"orders-production-runtime-secret-value"}


def test_existing_cluster(pulumi_run):
    _, res = run(pulumi_run, "test", aws={"cluster": f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/platform"})
    assert res.of_type("aws:ecs/cluster:Cluster") == []
    assert res.one("aws:ecs/service:Service").inputs["cluster"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/platform"
    deploy = json.loads(res.one("aws:iam/rolePolicy:RolePolicy", "orders-test-role-deploy-policy").inputs["policy"])
    assert deploy["Statement"][0]["Resource"] == f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/platform/orders-test"


def test_no_roles_without_grants(pulumi_run):
    _, res = run(pulumi_run, "acceptance", access=[])
    runtime = ["orders-acceptance-backup-role", "orders-acceptance-events-role", "orders-acceptance-execution-role", "orders-acceptance-redeploy-role", "orders-acceptance-task-role"]
    assert sorted(r.name for r in res.of_type("aws:iam/role:Role")) == runtime


def test_ipv6_cidr_and_public_opt_in(pulumi_run):
    _, res = run(pulumi_run, "production", aws={"ingressCidrs": ["0.0.0.0/0", "::/0"], "allowPublicIngress": True})
    v6 = res.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "orders-production-alb-in-443-1").inputs
    assert v6["cidrIpv6"] == "::/0" and "cidrIpv4" not in v6
    assert any("whole internet" in w for w in res.warnings)

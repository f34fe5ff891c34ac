"""The Pulumi components: `MendixApp` and one `MendixEnvironment` per environment."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import pulumi
import pulumi_random

from .naming import Naming, app_naming
from .target import AppContext, Deployment, EnvironmentContext

APP_TYPE = "mxinfra:index:MendixApp"
ENVIRONMENT_TYPE = "mxinfra:index:MendixEnvironment"


class MendixEnvironmentArgs(TypedDict):
    """Inputs of a MendixEnvironment: the validated deployment and which of its environments this is."""

    deployment: Deployment
    environment: str
    shared: Any
    shared_resources: NotRequired[list[pulumi.Resource]]  # what the target's deploy_app created
    records_provider: NotRequired[pulumi.ProviderResource]  # MendixApp's: see MendixApp._records_provider


class MendixEnvironment(pulumi.ComponentResource):
    """One environment of a Mendix app, realised by the deployment's target."""

    url: pulumi.Output[str]
    role: pulumi.Output[str]
    outputs: pulumi.Output[dict]

    def __init__(self, name: str, args: MendixEnvironmentArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ENVIRONMENT_TYPE, name, None, opts)
        deployment = args["deployment"]
        prepared = deployment.environment(args["environment"])
        if name != prepared.naming.prefix:
            raise ValueError(f"MendixEnvironment {name!r} must be named {prepared.naming.prefix!r} so its children share its prefix")
        for warning in prepared.warnings:
            pulumi.log.warn(f"{prepared.environment.name}: {warning}", resource=self)

        # First: every other child waits for its record of what is about to change (ctx.opts). A preview
        # declares the very same dependencies: the engine writes its whole snapshot for each unchanged
        # resource whose dependencies differ from the state's, which cost a preview of five environments
        # about a second of CPU (issue 18), more than the children's diffs gain by not waiting.
        self._records = args.get("records_provider")
        intent = self._release_intent(deployment, prepared)
        before = [intent] if intent is not None else []
        ctx = EnvironmentContext(
            deployment=deployment,
            prepared=prepared,
            component=self,
            admin_password=self._admin_password(prepared.naming, prepared.settings.admin_password, before),
            shared=args.get("shared"),
            before=before,
        )
        # While the target's SDK loads, the event loop sends what is declared above: the engine starts the
        # records' provider and writes the intent meanwhile (mxinfra.sdk_loading, issue 18). This component's
        # URN first (which needs the app's): the provider's registration can then go at once, and the intent
        # has its parent's; it still waits for the provider, at a later module boundary.
        from .sdk_loading import load

        load(deployment.target.sdk_modules, ready=lambda: [self.urn.future()])
        outputs = dict(deployment.target.deploy_environment(ctx))
        shared = list(args.get("shared_resources", [])) if prepared.environment.is_production else []
        secrets = self._secrets_digest(intent, ctx.admin_password, prepared.settings)
        # The outcome record is written only after everything it records was applied.
        after = [*ctx.depends_on, *self._children(), *shared]
        self.activity = self._activity_log(deployment, prepared, secrets, after)
        self.url = pulumi.Output.from_input(outputs.get("url", ""))
        self.role = pulumi.Output.from_input(prepared.environment.role.value)
        self.outputs = pulumi.Output.from_input(outputs)
        self.register_outputs({"url": self.url, "role": self.role, "outputs": self.outputs})

    def _release_intent(self, deployment: Deployment, prepared: Any) -> Any:
        """The environment's release intent: its record is written before anything of a change is applied,
        and it keeps the key for hashing the environment's secrets (only in the Pulumi state, as a secret)."""
        from .governance.record import ReleaseIntent

        # Not protected: it holds no data, and a lost key costs one comparison (the provider sees another key
        # id and takes the new hashes as a baseline, claiming no rotation). A production destroy never gets
        # to it anyway: it is among the children the protected activity resource depends on. It was the
        # SecretsKey before: the alias keeps that key.
        old = pulumi.Alias(name=prepared.naming.logical("secrets-key"), type_="pulumi-python:dynamic/mxinfra:SecretsKey")
        return ReleaseIntent(
            prepared.naming.logical("release-intent"),
            self._tracked(deployment, prepared),
            pulumi.ResourceOptions(parent=self, aliases=[old], provider=self._records),
        )

    def _secrets_digest(self, key: Any, admin_password: pulumi.Output[str], settings: Any) -> pulumi.Output[Any]:
        """Keyed hashes of every secret the core hands the runtime, as a secret output (never in plan or plain state)."""
        from .governance.record import ADMIN_PASSWORD, runtime_secrets, secrets_digest

        def hashed(args: list[Any]) -> Any:
            # Values are revealed only here, inside the apply, and only their HMACs leave it.
            return secrets_digest(args[0], {ADMIN_PASSWORD: args[1], **runtime_secrets(settings)})

        return pulumi.Output.secret(pulumi.Output.all(key.key, admin_password).apply(hashed))

    @staticmethod
    def _tracked(deployment: Deployment, prepared: Any) -> dict[str, Any]:
        """What a record says of a deployment: the same inputs for the intent and the activity resource."""
        from .governance.record import grants_digest, settings_digest
        from .governance.signing import signer_reference, trusted_signer_refs

        package = deployment.package
        return {
            "environment": prepared.environment.name,
            "app": deployment.config.app.name,
            # the tier, carried by every record: what the log says production stays production (F18)
            "role": prepared.environment.role.value,
            "signer": signer_reference(deployment.config, prepared.environment.name),
            # the other keys whose records a record of this environment may chain to (a rotated key's)
            "trustedSigners": trusted_signer_refs(deployment.config.raw.values, prepared.environment.name),
            # as configured: a relative file:// path resolves against the project directory at apply time
            "repository": deployment.repository_input or deployment.repository,
            "packageSha256": package.sha256,
            "packageVersion": package.version or package.model_version,
            "packagePath": package.portable_path,
            "artifact": prepared.artifact,
            "settingsDigest": settings_digest(prepared.settings),
            # What a record breaks down by name: non-secret constants with from/to.
            "constants": dict(prepared.settings.overrides),
            "instances": prepared.settings.instances,
            "grantsDigest": grants_digest(prepared.access),
        }

    def _activity_log(self, deployment: Deployment, prepared: Any, secrets: pulumi.Output[Any], depends_on: list[Any]) -> Any:
        from .governance.record import ActivityLogEntry

        return ActivityLogEntry(
            prepared.naming.logical("activity"),
            {
                **self._tracked(deployment, prepared),
                # what `pulumi up` verified the image to hold (not tracked: it follows the artifact and package)
                "image": prepared.image.record() if prepared.image is not None else None,
                # secrets by name only: keyed hashes under the intent's key
                "secretsDigest": secrets,
            },
            # The activity resource depends on every other resource of the environment (and, on
            # production, on the app's shared ones), so a destroy deletes it first. On production it is
            # protected: the destroy fails at that step, and the engine then skips every deletion the
            # failed one depends on, which is all of them: nothing of production is deleted, on every
            # target. (The engine goes on with deletions outside that closure, so protecting the data
            # alone would let everything that does not depend on it go.)
            # The provider returns its inputs as outputs, in plain: the digest must stay a secret there too.
            pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                protect=prepared.environment.is_production,
                additional_secret_outputs=["secretsDigest"],
                provider=self._records,
            ),
        )

    def _children(self) -> list[pulumi.Resource]:
        """Every resource registered so far under this environment (the SDK expands components)."""
        # _childResources is the set the SDK itself uses to expand a dependency on a component; a
        # dependency on `self` from its own child would be a cycle.
        return sorted(self._childResources, key=lambda r: r.pulumi_resource_name)

    def _admin_password(self, naming: Naming, configured: Any, before: list[Any]) -> pulumi.Output[str]:
        if configured is not None:
            return pulumi.Output.secret(configured.reveal())
        # Mendix's default password policy wants length and every character class; no quotes or
        # shell metacharacters, since the value travels through env vars and URLs.
        generated = pulumi_random.RandomPassword(
            naming.logical("admin-password"),
            length=32,
            special=True,
            override_special="-_.+!#",
            min_lower=2,
            min_upper=2,
            min_numeric=2,
            min_special=2,
            opts=pulumi.ResourceOptions(parent=self, depends_on=before),
        )
        return pulumi.Output.secret(generated.result)


class MendixAppArgs(TypedDict):
    """Inputs of a MendixApp: the validated deployment (from `mxinfra.deployment.prepare`)."""

    deployment: Deployment


class MendixApp(pulumi.ComponentResource):
    """A Mendix app and all the environments of this stack on one target."""

    package_sha256: pulumi.Output[str]
    model_version: pulumi.Output[str]
    environments: pulumi.Output[dict]

    def __init__(self, name: str, args: MendixAppArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(APP_TYPE, name, None, opts)
        deployment = args["deployment"]
        if name != deployment.config.app.name:
            raise ValueError(f"MendixApp {name!r} must carry the app's name {deployment.config.app.name!r}")
        naming = app_naming(name)
        shared = deployment.target.deploy_app(
            AppContext(deployment, self, naming, {"mxinfra:app": name})
        )
        shared_resources = sorted(self._childResources, key=lambda r: r.pulumi_resource_name)
        # after deploy_app: a target's release guard refuses before anything is declared
        records = self._records_provider(naming)
        children = {
            p.environment.name: MendixEnvironment(
                p.naming.prefix,
                {
                    "deployment": deployment,
                    "environment": p.environment.name,
                    "shared": shared,
                    "shared_resources": shared_resources,
                    "records_provider": records,
                },
                pulumi.ResourceOptions(parent=self),
            )
            for p in deployment.environments
        }
        self.package_sha256 = pulumi.Output.from_input(deployment.package.sha256)
        self.model_version = pulumi.Output.from_input(deployment.package.model_version)
        self.environments = pulumi.Output.from_input({n: c.outputs for n, c in children.items()})
        self.register_outputs(
            {"package_sha256": self.package_sha256, "model_version": self.model_version, "environments": self.environments}
        )

    def _records_provider(self, naming: Naming) -> pulumi.ProviderResource:
        """The provider of every environment's release intent and activity resource: one Python process.

        Explicit, with no inputs, because the engine hands the default `pulumi-python` provider the whole
        stack config as its inputs: every release and constant change then updated that provider first (two
        more snapshot writes, and the intents waited for them). These providers read no config."""
        return pulumi.ProviderResource("pulumi-python", naming.logical("records"), {}, pulumi.ResourceOptions(parent=self))

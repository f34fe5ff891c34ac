"""The `kubernetes` target of mxinfra: Mendix apps on any cluster, plain or through the Mendix Operator.

Kept light: pulumi_kubernetes is imported only when a stack deploys with this target.
"""

from __future__ import annotations

from .target import EXISTING_NAMESPACE_WARNING, MFA_WARNING, KubernetesTarget

__all__ = ["EXISTING_NAMESPACE_WARNING", "MFA_WARNING", "KubernetesTarget", "target"]

target = KubernetesTarget()

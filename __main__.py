"""The example project's Pulumi program: everything lives in the mxinfra library."""

from mxinfra.program import run

run()
